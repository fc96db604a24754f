"""Markers -> one probe each -> one standard skip reason.

Hardware and environment markers (gpu, ort_cuda, tensorrt, openvino, inc, arm64, ray, triton, tf4, kserve, infinity)
and CPU feature markers (cpu_bf16, cpu_fp16, cpu_vnni, cpu_amx) are probed here, once per kind. REQUIRE_HW=gpu,tensorrt
(or 'all') turns their skips into failures, so a GPU run cannot pass silently. DISTILBERT_DEPLOY_TEST_ABSENT=cpu_bf16,...
forces those probes to report the feature absent (to see, on a machine that has it, what a machine without it runs).
Cost markers (server, emulated, slow) are not probed: `-m` selects them (make test-fast deselects them)."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from runtimes.procs import venv_bin
from runtimes.registry import BACKENDS
from tiny_tasks import runtime_of, tiny  # noqa: F401 (fixtures: scaled tiny models for the task and service tests)

FORCE_ABSENT = "DISTILBERT_DEPLOY_TEST_ABSENT"


def _module(name: str, extra: str):
    def probe():
        if importlib.util.find_spec(name) is None:
            return f"needs module '{name}' (pip install '.[{extra}]')"
    return probe


def _gpu():
    if importlib.util.find_spec("torch") is None:
        return "needs an NVIDIA GPU: torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return "needs an NVIDIA GPU (torch.cuda.is_available() is False)"


@functools.lru_cache(maxsize=1)
def _inc():
    """INC runs in its own venv (quantization/inc.py): its python must exist and import onnx_neural_compressor."""
    import subprocess

    from quantization.inc import venv_python

    py = venv_python()
    if not py.is_file() or subprocess.run([str(py), "-I", "-c", "import onnx_neural_compressor"],
                                          capture_output=True).returncode != 0:
        return "needs .venv-inc (make venv-inc)"


def _ort_cuda():
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "needs onnxruntime-gpu with the CUDAExecutionProvider (make venv EXTRAS=export,ort-gpu,dev)"


def _tensorrt():
    if importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_rtx") is None:
        return ("needs module 'tensorrt' (full TensorRT from NVIDIA's index) or 'tensorrt_rtx' "
                "(pip install '.[tensorrt-rtx]')")


def _arm64():
    from runtimes.arm64.env import locate
    from runtimes.errors import BackendUnavailable

    try:
        locate()
    except BackendUnavailable as e:
        return f"needs the emulated aarch64 environment (make arm64-env): {e}"


def _venv(name: str, why: str):
    def probe():
        if not venv_bin(name).is_file():
            return f"needs .venv-{name} (make venv-{name}): {why}"
    return probe


def _ray():
    """Ray's internal servers bind the host address: its tests run in a private network namespace (root)."""
    if reason := _venv("ray", "Ray Serve and protobuf 7 live there")():
        return reason
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs root with unshare and ip (a private network namespace keeps Ray on loopback)"


def _cpu(flags: tuple[str, ...], what: str):
    """A CPU feature probe over runtimes.hardware.cpu_info(): present when any of `flags` is set."""
    def probe():
        from runtimes.hardware import cpu_info, isa_text

        cpu = cpu_info()
        if not any(cpu["flags"].get(f) for f in flags):
            return f"needs a CPU with {what}; this one ({cpu['model']}) has {isa_text(cpu)}"
    return probe


PROBES = {
    "gpu": _gpu,
    "ort_cuda": _ort_cuda,
    "arm64": _arm64,
    "tensorrt": _tensorrt,
    "openvino": _module("openvino", "openvino"),
    "inc": _inc,
    "ray": _ray,
    "triton": _venv("triton", "the bundled tritonserver (nvidia-pytriton)"),
    "tf4": _venv("tf4", "the real transformers 4.x question-answering pipeline"),
    "kserve": _venv("kserve", "KServe's ModelServer, a bench-serve peer"),
    "infinity": _venv("infinity", "infinity-emb, a bench-serve peer (built by "
                      "make bench-serve only)"),
    "cpu_bf16": _cpu(("avx512_bf16", "amx_bf16"), "bf16 execution (AVX512-BF16 or AMX-BF16)"),
    "cpu_fp16": _cpu(("avx512_fp16",), "fp16 execution (AVX512-FP16)"),
    "cpu_vnni": _cpu(("avx512_vnni", "avx_vnni"), "INT8 dot products (AVX512-VNNI or AVX-VNNI)"),
    "cpu_amx": _cpu(("amx_int8", "amx_bf16"), "AMX tiles (AMX-INT8 or AMX-BF16)"),
}


@functools.lru_cache(maxsize=None)
def lacks(kind: str) -> str | None:
    """Why this machine lacks `kind` (None: it has it), once per session. A test that expects different behaviour
    with and without a CPU feature branches on this: the hardware decides, whatever a forced probe says."""
    return PROBES[kind]()


def probe(kind: str) -> str | None:
    """What a marker's gate sees: lacks(kind), or 'forced absent' for the kinds DISTILBERT_DEPLOY_TEST_ABSENT names."""
    forced = {x.strip() for x in os.environ.get(FORCE_ABSENT, "").split(",") if x.strip()}
    if kind in forced or "all" in forced:
        return f"{kind} forced absent ({FORCE_ABSENT}={os.environ[FORCE_ABSENT]})"
    return lacks(kind)


def required_hw() -> set[str]:
    return {x.strip() for x in os.environ.get("REQUIRE_HW", "").split(",") if x.strip()}


def skip_or_fail(kind: str, reason: str) -> None:
    required = required_hw()
    if kind in required or "all" in required:
        pytest.fail(f"REQUIRE_HW={os.environ['REQUIRE_HW']} but {reason}", pytrace=False)
    pytest.skip(reason)


def require(kind: str) -> None:
    """Skip (or fail under REQUIRE_HW) when `kind` is missing: for a fixture that needs it outside a marker."""
    if reason := probe(kind):
        skip_or_fail(kind, reason)


# Fixtures that cost what a marker says: a test that uses one (directly or through another fixture) carries it.
FIXTURE_MARKS = {
    "tiny_tensorrt": ("tensorrt",), "rtx": ("tensorrt",), "tiny_engines": ("tensorrt",),  # engine builds
    "default_engines": ("tensorrt", "slow"),
    "default_artifact": ("slow",), "default_cache": ("slow",),  # the real-size default model
    "tf4_python": ("tf4",),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in set(item.fixturenames) & set(FIXTURE_MARKS):
            for mark in FIXTURE_MARKS[name]:
                item.add_marker(mark)


def pytest_runtest_setup(item):
    for mark in item.iter_markers():
        if mark.name in PROBES:
            require(mark.name)


def require_backend(name: str) -> None:
    """Skip (or fail under REQUIRE_HW) when a registry backend's modules are missing."""
    entry = BACKENDS[name]
    if missing := entry.missing():
        skip_or_fail(name, f"needs module '{missing[0]}' (pip install '.[{entry.extra}]')")


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory):
    """Every task of the tiny model exported once per session, for both backends:
    {(task, backend): artifact path}."""
    os.environ.setdefault("DISTILBERT_DEPLOY_QUIET", "1")
    from exporters.onnx_export import ExportConfig, export
    from runtimes.heads import TASKS

    root = tmp_path_factory.mktemp("tiny-artifacts")
    out = {}
    for task in TASKS:
        for backend in ("onnxruntime", "torch"):
            path = root / task / backend
            export(ExportConfig(model="tiny", task=task, out=path, backend=backend))
            out[task, backend] = path
    return out


@pytest.fixture(scope="session")
def tiny_openvino(tiny_artifacts, tmp_path_factory):
    """build(task, precision) -> OpenVINO artifact built from the tiny ONNX artifact, once per session
    (fp32/bf16: IR export; int8: NNCF on 32 train tweets)."""
    root = tmp_path_factory.mktemp("tiny-openvino")
    built = {}

    def build(task: str, precision: str = "fp32"):
        if (task, precision) not in built:
            src, out = tiny_artifacts[task, "onnxruntime"], root / task / precision
            if precision == "int8":
                from quantization.openvino_int8 import quantize

                quantize(int8_config(src, out))
            else:
                from exporters.openvino_export import OpenVinoExportConfig, export_openvino

                export_openvino(OpenVinoExportConfig(src=src, out=out, precision=precision))
            built[task, precision] = out
        return built[task, precision]

    return build


@pytest.fixture(scope="session")
def tiny_tensorrt(tiny_artifacts, tmp_path_factory):
    """build(task) -> TensorRT fp16 engine artifact of the tiny model for this machine's GPU, once per session:
    full TensorRT when installed, else TensorRT-RTX where it has this GPU's target (never sm90)."""
    root = tmp_path_factory.mktemp("tiny-tensorrt")
    built = {}

    def build(task: str):
        if task not in built:
            from exporters.tensorrt_export import TrtExportConfig, export_trt

            flavor, targets = gpu_flavor()
            export_trt(TrtExportConfig(src=tiny_artifacts[task, "onnxruntime"], out=root / task, flavor=flavor,
                                       targets=targets))
            built[task] = root / task
        return built[task]

    return build


def gpu_flavor() -> tuple[str, tuple[str, ...]]:
    """The TensorRT flavor that can build for this GPU, and its targets."""
    import torch

    from runtimes.tensorrt_flavor import Flavor, available

    cc = "sm{}{}".format(*torch.cuda.get_device_capability(0))
    if available("tensorrt"):
        return "tensorrt", ()
    if available("tensorrt-rtx") and cc in Flavor("tensorrt-rtx").targets():
        return "tensorrt-rtx", (cc,)
    skip_or_fail("tensorrt", f"needs full TensorRT for this GPU ({cc}): TensorRT-RTX has no {cc} target")


def int8_config(src, out, method: str = "int8", calibration_size: int = 32, max_accuracy_drop: float = 0.01):
    """A QuantizeConfig for the OpenVINO NNCF recipe (target cpu-f32: the same recipe on every CI machine)."""
    from quantization.config import QuantizeConfig

    return QuantizeConfig(artifact=src, out=out, backend="openvino", method=method, target="cpu-f32",
                          calibration_size=calibration_size,
                          max_accuracy_drop=max_accuracy_drop)


AVX2_ONLY = ("avx2", "fma")  # AMD Zen 3 and the like: no AVX-512, no VNNI, no AMX


def synthetic_cpu(*flags: str, machine: str = "x86_64") -> dict:
    """A cpu_info() record with exactly these ISA flags: tests that assert a pick never read the machine's own."""
    from runtimes.hardware import CPU_FLAGS

    return {"model": "synthetic test CPU", "machine": machine, "flags": {f: f in flags for f in CPU_FLAGS}}


@contextlib.contextmanager
def auto_target_sees(*flags: str, machine: str = "x86_64"):
    """`--target auto` picks for a synthetic CPU with these flags while the block runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("quantization.auto_target.cpu_info", lambda: synthetic_cpu(*flags, machine=machine))
        yield


@pytest.fixture(scope="session")
def default_artifact(tmp_path_factory):
    """get(task) -> the default model's ONNX fp32 artifact of that head (a directory named onnxruntime-fp32),
    exported once per session for every test that needs a real-size one. Shared: copy it before changing it."""
    root = tmp_path_factory.mktemp("default-artifacts")
    built = {}

    def get(task: str = "text-classification") -> Path:
        if task not in built:
            os.environ.setdefault("DISTILBERT_DEPLOY_QUIET", "1")
            from exporters.onnx_export import ExportConfig, export

            path = root / task / "onnxruntime-fp32"
            export(ExportConfig(model="default", task=task, out=path))
            built[task] = path
        return built[task]

    return get


def require_rtx():
    """Flavor('tensorrt-rtx'), or skip (fail under REQUIRE_HW=tensorrt): a test that builds engines for named targets
    without their GPU needs TensorRT-RTX itself, not full TensorRT."""
    from runtimes.tensorrt_flavor import Flavor, available

    if not available("tensorrt-rtx"):
        skip_or_fail("tensorrt", "needs module 'tensorrt_rtx' (make venv: pip install '.[tensorrt-rtx]')")
    return Flavor("tensorrt-rtx")


def see_gpu(monkeypatch, gpu: tuple[str, tuple[int, int]] | None) -> None:
    """Make torch, the one probe runtimes.tensorrt_backend.host_facts reads, report this (name, (major, minor)) GPU
    (None: no GPU) for the rest of the test, whatever this machine has."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu is not None)
    if gpu is not None:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu[0])
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: gpu[1])
