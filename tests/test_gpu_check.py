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


def _summary_doc() -> dict:
    """A summary as `run` assembles it on the GPU host (every step's record shape)."""
    machine = {"gpu": "NVIDIA H200", "compute_capability": "sm90", "nvidia_smi": "NVIDIA H200, 570.1, 143771 MiB, 9.0",
               "torch": "2.9.1+cu128", "cuda": "12.8", "python": "3.12.3", "onnxruntime": "1.23.2",
               "onnxruntime_providers": ["CPUExecutionProvider"], "tensorrt": False, "tensorrt_rtx": False,
               "cpu_count": 16, "host": "gpu-1"}
    steps = {"tests": {"status": "passed", "detail": "9 passed", "seconds": 80.2, "rc": 0},
             "serve": {"status": "FAILED", "detail": "0 answers", "seconds": 4.0, "rc": None}}
    tests = {"command": "REQUIRE_HW=gpu python -m pytest -m gpu", "deselected": {"t::x": "no CUDA provider"},
             "cases": [{"id": "tests.test_a::b", "outcome": "skipped", "why": "no TensorRT", "seconds": 0.0}],
             "counts": {"passed": 9, "failed": 0, "error": 0, "skipped": 1}}
    bench = {"command": "python -m distilbert_deploy bench run", "rows": [
        {"target": "torch-cuda-fp16", "shape": "1x128", "p50_ms": 1.25, "p99_ms": 1.5, "n": 400,
         "sequences_per_s": 800.0}], "targets": [{"id": "torch-cuda-fp16", "status": "ok", "reason": None,
                                                  "precision": "fp16", "device": "cuda"}]}
    serve = {"steps": [{"users": 4, "ok": 0, "errors": 3, "error_messages": ["refused"], "wall_s": 1.0,
                        "answers_per_s": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}], "load": "closed loop",
             "command": "distilbert-deploy serve A --device cuda", "error": "ServeBenchError: not ready"}
    return {"schema_version": 1, "created": "2026-12-04T03:00:00+00:00", "device": "cuda", "machine": machine,
            "carried": None, "tests": tests, "bench": bench, "serve": serve, "steps": steps, "budget_s": 480,
            "passed": False, "seconds": 90.0}


def test_gpu_check_summary_is_typed_and_reads_back(tmp_path):
    from benchmarks.gpu_check_report import read_summary, render
    from benchmarks.report_io import load, write_report

    paths = write_report(read_summary(_summary_doc()), tmp_path, render, indent=1)
    again = load(type(read_summary(_summary_doc())), paths["json"])
    assert again.steps["serve"].rc is None and again.serve.steps[0].error_messages == ("refused",)
    md = paths["md"].read_text()
    assert md.startswith("# gpu-check: FAILED") and "| serve | FAILED | 4 | 0 answers |" in md
    assert "| torch-cuda-fp16 | 1.250 (1.500) |" in md and "Ready in – s" in md and "Error: ServeBenchError" in md
    assert "- SKIPPED `tests.test_a::b`: no TensorRT" in md and "deselected `t::x`" in md


def test_gpu_check_summary_names_a_malformed_field():
    import pytest

    from benchmarks.gpu_check_report import read_summary
    from benchmarks.report_io import ReportError

    doc = _summary_doc()
    doc["steps"]["tests"]["seconds"] = "slow"
    with pytest.raises(ReportError, match=r"GpuCheckSummary\.steps\.tests\.seconds: expected float"):
        read_summary(doc)
    del doc["device"]
    with pytest.raises(ReportError, match="missing field"):
        read_summary(doc)
