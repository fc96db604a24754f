"""`make gpu-check` (benchmarks/gpu_check.sh): on a machine where no NVIDIA GPU is visible it refuses at once, says
what is missing and how to fix it, and writes nothing. (On a GPU host it is run as itself: docs/gpu-check.md.)"""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_refuses_at_once_without_a_gpu(tmp_path):
    """A PATH with the few tools the script's first lines use and no nvidia-smi: the same on every machine."""
    import shutil

    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname", "head"):
        (tools / tool).symlink_to(shutil.which(tool))
    out = tmp_path / "out"
    env = {**os.environ, "PATH": str(tools), "GPU_CHECK_OUT": str(out), "GPU_CHECK_WORK": str(tmp_path / "w")}
    r = subprocess.run([shutil.which("bash"), "benchmarks/gpu_check.sh"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no NVIDIA GPU is visible here (nvidia-smi is not on PATH)" in r.stderr and "nothing was run" in r.stderr
    assert "Fix: run it on a machine with an NVIDIA GPU" in r.stderr
    assert not out.exists() and not (tmp_path / "w").exists()


def test_make_gpu_check_runs_the_script():
    r = subprocess.run(["make", "-n", "gpu-check"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "bash benchmarks/gpu_check.sh" in r.stdout, r.stdout + r.stderr
