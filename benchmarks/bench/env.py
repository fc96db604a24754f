"""The machine a report was measured on: CPU model and flags, cores, threads, load, GPU/driver/CUDA/TensorRT
where present, library versions, git SHA. Import-free where it can be (metadata, /proc, subprocess)."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from runtimes.artifact import library_versions
from runtimes.hardware import cpu_info, gpu_info  # reports import them from here

LIBRARIES = ("numpy", "torch", "transformers", "tokenizers", "onnx", "onnxruntime",
             "onnxruntime-gpu", "openvino", "nncf", "neural-compressor", "tensorrt", "optimum", "optimum-intel",
             "optimum-onnx", "matplotlib", "rich")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OV_CPU_THREADS_NUM")


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
