"""The machine a report was measured on: CPU model and flags, cores, threads, load, GPU/driver/CUDA/TensorRT
where present, library versions, git SHA. Import-free where it can be (metadata, /proc, subprocess)."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from runtimes.artifact import library_versions

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "fma")
LIBRARIES = ("numpy", "torch", "transformers", "tokenizers", "onnx", "onnxruntime",
             "onnxruntime-gpu", "openvino", "nncf", "neural-compressor", "tensorrt", "optimum", "optimum-intel",
             "optimum-onnx", "matplotlib", "rich")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OV_CPU_THREADS_NUM")


def cpu_info() -> dict:
    model, flags = platform.processor() or "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"model": model or platform.machine(), "flags": {f: f in flags for f in CPU_FLAGS},
            "logical_cpus": os.cpu_count(), "physical_cores": physical, "usable_cpus": affinity,
            "load_average_1_5_15": load, "machine": platform.machine()}


def gpu_info() -> dict | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = [dict(zip(("name", "driver", "memory", "compute_capability"), (x.strip() for x in line.split(","))))
            for line in out.strip().splitlines() if line.strip()]
    return {"gpus": gpus} if gpus else None


def versions() -> dict:
    return library_versions(*LIBRARIES)


def git_info(repo: Path) -> dict:
    def git(*args):
        try:
            r = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=20)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


def capture(repo: Path, *, torch_loaded: bool = False) -> dict:
    env = {"cpu": cpu_info(), "gpu": gpu_info(), "python": platform.python_version(),
           "platform": platform.platform(), "libraries": versions(), "git": git_info(repo),
           "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ}}
    import sys

    if torch_loaded and "torch" in sys.modules:  # only when a torch target already imported it
        torch = sys.modules["torch"]
        env["torch"] = {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                        "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
        if torch.cuda.is_available():
            env["torch"]["device"] = torch.cuda.get_device_name()
    return env
