"""Runtime interface, registry and both backends on the tiny model."""
import subprocess
import sys

import numpy as np
import pytest

from runtimes.base import RuntimeOptions
from runtimes.errors import BackendUnavailable, ConfigError, InputError
from runtimes.heads import TASKS
from runtimes.registry import load_runtime, open_runtime

# (batch, num_choices, row lengths): none of these is the export shape (2, 16) nor a validation case.
SHAPES = ((2, 2, (11, 11)), (4, 3, (50, 3, 27, 50)), (3, 5, (200, 1, 64)))


def feeds(multiple_choice: bool, seed=1):
    rng = np.random.default_rng(seed)
    for batch, choices, lengths in SHAPES:
        lead = (batch, choices) if multiple_choice else (batch,)
        ids = np.zeros((*lead, max(lengths)), np.int64)
        mask = np.zeros_like(ids)
        for row, n in enumerate(lengths):
            ids[row, ..., :n] = rng.integers(999, 30522, (*lead[1:], n))
            mask[row, ..., :n] = 1
        yield {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("task", TASKS)
def test_onnxruntime_matches_torch_on_unseen_padded_shapes(tiny_artifacts, task):
    with load_runtime(tiny_artifacts[task, "onnxruntime"]) as ort_rt, load_runtime(tiny_artifacts[task, "torch"]) as ref:
        for feed in feeds(task == "multiple-choice"):
            got, want = ort_rt.infer(feed), ref.infer(feed)
            assert set(got) == set(want) == {t.name for t in ort_rt.manifest.outputs}
            for name in want:
                assert got[name].shape == want[name].shape
                assert got[name].dtype == np.float32
                assert np.max(np.abs(got[name] - want[name])) <= 1e-4, name


def test_runtime_lifecycle_and_describe(tiny_artifacts):
    rt = open_runtime(tiny_artifacts["fill-mask", "onnxruntime"])
    assert not rt.loaded
    with pytest.raises(InputError, match="not loaded"):
        rt.infer(next(feeds(False)))
    with rt:
        d = rt.describe()
        assert d["backend"] == "onnxruntime" and d["providers"] == ["CPUExecutionProvider"]
        assert d["task"] == "fill-mask" and d["precision"] == "fp32"
    assert not rt.loaded


@pytest.mark.parametrize("bad, match", [
    (lambda f: {**f, "input_ids": f["input_ids"].astype(np.int32)}, r"dtype int32; expected int64"),
    (lambda f: {"input_ids": f["input_ids"]}, r"missing \['attention_mask'\]"),
    (lambda f: {**f, "token_type_ids": f["input_ids"]}, r"unexpected \['token_type_ids'\]"),
    (lambda f: {k: v[0] for k, v in f.items()}, r"\(rank 1\); expected rank 2"),
    (lambda f: {k: np.ones((1, 513), np.int64) for k in f}, r"'sequence' is 513; this artifact accepts 1..512"),
    (lambda f: {**f, "attention_mask": f["attention_mask"][:, :5]}, r"must share one shape"),
    (lambda f: {k: v.tolist() for k, v in f.items()}, r"must be a numpy array"),
])
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_bad_raw_feeds_are_rejected_before_the_backend(tiny_artifacts, backend, bad, match):
    with load_runtime(tiny_artifacts["text-classification", backend]) as rt:
        with pytest.raises(InputError, match=match):
            rt.infer(bad(next(feeds(False))))


def test_missing_provider_is_an_error_not_a_cpu_fallback(tiny_artifacts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA: the fallback case cannot be shown here")
    for opts in (RuntimeOptions(device="cuda"), RuntimeOptions(providers=("TensorrtExecutionProvider",))):
        with pytest.raises(BackendUnavailable, match=r"onnxruntime.*missing: (CUDA|Tensorrt)ExecutionProvider.*onnxruntime-gpu"):
            load_runtime(tiny_artifacts["text-classification", "onnxruntime"], opts)


def test_session_that_drops_a_provider_is_an_error(tiny_artifacts, monkeypatch):
    """ORT keeps going on CPU when CUDA libraries fail to load; we must not."""
    import onnxruntime as ort

    class FallbackSession(ort.InferenceSession):
        def __init__(self, path, so, providers):
            super().__init__(path, so, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FallbackSession)
    with pytest.raises(BackendUnavailable, match=r"fell back to \['CPUExecutionProvider'\]"):
        load_runtime(tiny_artifacts["text-classification", "onnxruntime"], RuntimeOptions(device="cuda"))


def test_torch_precisions(tiny_artifacts):
    path = tiny_artifacts["feature-extraction", "torch"]
    feed = next(feeds(False))
    with load_runtime(path) as fp32, load_runtime(path, RuntimeOptions(precision="bf16")) as bf16:
        a, b = fp32.infer(feed)["last_hidden_state"], bf16.infer(feed)["last_hidden_state"]
        assert bf16.describe()["precision"] == "bf16"
        assert b.dtype == np.float32 and 0 < np.max(np.abs(a - b)) < 0.2
    with pytest.raises(ConfigError, match="torch on cpu runs fp32, bf16"):
        load_runtime(path, RuntimeOptions(precision="fp16"))
    with pytest.raises(ConfigError, match="artifact is fp32; precision 'bf16'"):
        load_runtime(tiny_artifacts["feature-extraction", "onnxruntime"], RuntimeOptions(precision="bf16"))


def test_bad_options_and_backends():
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        RuntimeOptions(device="tpu")
    from runtimes.registry import get_backend
    with pytest.raises(ConfigError, match="unknown backend 'mxnet'. Expected one of: torch, onnxruntime"):
        get_backend("mxnet")


def test_missing_backend_module_names_the_extra(monkeypatch):
    import importlib.util

    from runtimes import registry
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    with pytest.raises(BackendUnavailable, match=r"missing: onnxruntime.*distilbert-deploy\[ort\]"):
        registry.runtime_class("onnxruntime")


def test_import_runtimes_does_not_import_torch():
    code = ("import runtimes, runtimes.registry, runtimes.pipeline, runtimes.ort_backend, runtimes.tensorrt_backend, "
            "runtimes.tensorrt_flavor, sys; bad = [m for m in ('torch', 'tensorrt', 'tensorrt_rtx', 'fastapi', 'uvicorn') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_torch_on_cuda_matches_fp32_cpu(tiny_artifacts, task, precision):
    path = tiny_artifacts[task, "torch"]
    tol = {"fp32": 1e-4, "fp16": 5e-3, "bf16": 5e-2}[precision]
    with load_runtime(path) as cpu, load_runtime(path, RuntimeOptions(device="cuda", precision=precision)) as gpu:
        d = gpu.describe()
        assert d["device"] == "cuda" and d["precision"] == precision and d["gpu"]
        for feed in feeds(task == "multiple-choice"):
            want, got = cpu.infer(feed), gpu.infer(feed)
            for name in want:
                scale = max(1.0, float(np.max(np.abs(want[name]))))
                assert got[name].dtype == np.float32
                assert np.max(np.abs(got[name] - want[name])) <= tol * scale, (name, precision)


@pytest.mark.gpu
@pytest.mark.ort_cuda
def test_onnxruntime_cuda_provider_is_obtained(tiny_artifacts):
    feed = next(feeds(False))
    path = tiny_artifacts["text-classification", "onnxruntime"]
    with load_runtime(path, RuntimeOptions(device="cuda")) as gpu, load_runtime(path) as cpu:
        assert gpu.describe()["providers"][0] == "CUDAExecutionProvider"
        assert np.max(np.abs(gpu.infer(feed)["logits"] - cpu.infer(feed)["logits"])) < 1e-3
