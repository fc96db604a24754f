"""Hardware markers -> one probe each -> one standard skip reason.
REQUIRE_HW=gpu,tensorrt (or 'all') turns those skips into failures, so a GPU run cannot pass silently."""
from __future__ import annotations

import functools
import importlib.util
import os

import pytest

from runtimes.registry import BACKENDS
from tiny_tasks import runtime_of, tiny  # noqa: F401 (fixtures: scaled tiny models for the task and service tests)


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


PROBES = {
    "gpu": _gpu,
    "arm64": _arm64,
    "tensorrt": _tensorrt,
    "openvino": _module("openvino", "openvino"),
    "inc": _inc,
}


def required_hw() -> set[str]:
    return {x.strip() for x in os.environ.get("REQUIRE_HW", "").split(",") if x.strip()}


def skip_or_fail(kind: str, reason: str) -> None:
    required = required_hw()
    if kind in required or "all" in required:
        pytest.fail(f"REQUIRE_HW={os.environ['REQUIRE_HW']} but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item):
    for mark in item.iter_markers():
        probe = PROBES.get(mark.name)
        if probe and (reason := probe()):
            skip_or_fail(mark.name, reason)


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
