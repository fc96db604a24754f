"""The arm64 edge artifact judged on aarch64: the aarch64 build of ONNX Runtime under QEMU (runtimes/arm64).

The env-dependent tests are marked `arm64`: `make test` builds the environment (make arm64-env), elsewhere they skip
with the reason (REQUIRE_HW=arm64 turns that into a failure)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "distilbert_deploy.cli"]
# The default model's text-classification head (labelled: accuracy is judged) and one unlabelled head, the one with
# the fewest corpus tokens (emulated fp32 MatMuls run ~100x slower than INT8 ones: the ci corpus is minutes here).
HEADS = ("text-classification", "token-classification")


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "DISTILBERT_DEPLOY_QUIET": "1", **(env or {})}, timeout=3600)


def test_missing_environment_is_a_clear_error(tiny_artifacts, tmp_path):
    """No environment: exit 2, saying what is missing, where it looked and how to build it; nothing judged."""
    art = tiny_artifacts["text-classification", "onnxruntime"]
    r = cli("parity", art, "--platform", "linux-aarch64", "--out", tmp_path / "r", "--no-manifest",
            env={"DISTILBERT_DEPLOY_ARM64_ENV": str(tmp_path / "no-env")})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "emulated aarch64 environment" in r.stderr and str(tmp_path / "no-env" / "env.json") in r.stderr
    assert "Fix: make arm64-env" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r" / "parity.json").exists()


def test_unknown_platform_is_refused(tiny_artifacts, tmp_path):
    r = cli("parity", tiny_artifacts["text-classification", "onnxruntime"], "--platform", "linux-armv7",
            "--out", tmp_path, "--no-manifest")
    assert r.returncode == 2 and "unknown platform ['linux-armv7']" in r.stderr and "linux-aarch64" in r.stderr


@pytest.fixture(scope="module")
def default_arm64(tmp_path_factory):
    """The arm64 preset's artifacts of the default model, built as `make quantize TARGET=arm64` builds them (method
    dynamic: the smallest that passes on both platforms, docs/edge/README.md)."""
    from exporters.onnx_export import ExportConfig, export
    from quantization.api import quantize
    from quantization.config import QuantizeConfig

    root = tmp_path_factory.mktemp("arm64")
    out = {}
    for task in HEADS:
        src = root / task / "onnxruntime-fp32"
        export(ExportConfig(model="default", task=task, out=src))
        out[task] = root / task / "onnxruntime-dynamic-arm64"
        quantize(QuantizeConfig(artifact=src, out=out[task], backend="onnxruntime", method="dynamic", target="arm64"))
    return out


@pytest.mark.arm64
@pytest.mark.parametrize("task", HEADS)
def test_arm64_artifact_passes_parity_on_aarch64(default_arm64, task, tmp_path):
    """The edge artifact passes on the host and on the emulated aarch64, and both verdicts land in the manifest."""
    art = default_arm64[task]
    r = cli("parity", art, "--platform", "host,linux-aarch64", "--out", tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((tmp_path / "parity.json").read_text())
    host, arm = report["targets"]
    assert host["platform"] == f"linux-{os.uname().machine}" and host["passed"]
    assert arm["platform"] == "linux-aarch64 (emulated, QEMU_CPU=neoverse-n1)" and arm["passed"]
    assert arm["cases"] == host["cases"] >= 10 and "--platform linux-aarch64" in arm["repro"]
    # the ARM kernels' answers are close to x86's, not identical by construction: both are judged on their own
    judged = {c["name"]: c for c in arm["checks"] if c["passed"] is not None}
    assert "errors" in judged and len(judged) >= 2
    if task == "text-classification":
        assert judged["accuracy_delta"]["value"] >= -0.01 and judged["label_agreement"]["value"] >= 0.95
        assert "300 held-out labelled tweets" in judged["accuracy_delta"]["detail"]
    suite = json.loads((art / "manifest.json").read_text())["parity"]["suite"]
    assert suite["passed"] and suite["runs"]["int8"]["platform"] == host["platform"]
    on_arm = suite["platforms"]["linux-aarch64"]
    assert on_arm["passed"] and on_arm["platform"] == arm["platform"] and on_arm["runs"]["int8"]["cases"] == arm["cases"]
    shown = cli("inspect", art)
    assert "parity (linux-aarch64)" in shown.stdout and "PASSED on linux-aarch64 (emulated" in shown.stdout


def _damaged(src: Path, dst: Path) -> None:
    """A copy whose INT8 word-embedding table is dequantized with its scale times -8, re-converted to .ort and
    re-checksummed: it loads and runs everywhere, with wrong numbers."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from quantization.edge_bundle import write_ort_format
    from runtimes.artifact import finalize, read_manifest

    shutil.copytree(src, dst)
    model = onnx.load(str(dst / "model.onnx"))
    target = next(i for i in model.graph.initializer if i.name == "distilbert.embeddings.word_embeddings.weight_scale")
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * np.float32(-8), target.name))
    onnx.save(model, str(dst / "model.onnx"))
    write_ort_format(dst / "model.onnx", dst / "model.ort")
    (dst / "manifest.json").unlink()
    finalize(dst, read_manifest(src))


@pytest.mark.arm64
def test_damaged_arm64_artifact_fails_on_aarch64(default_arm64, tmp_path):
    bad = tmp_path / "damaged"
    _damaged(default_arm64["text-classification"], bad)
    # a slice of the corpus is enough to catch it (a --case run writes no manifest verdict)
    r = cli("parity", bad, "--platform", "linux-aarch64", "--out", tmp_path / "r", "--case", "tweet/1")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = json.loads((tmp_path / "r" / "parity.json").read_text())["targets"]
    assert not t["passed"] and t["platform"].startswith("linux-aarch64 (emulated")
    assert any(c["name"] in ("label_agreement", "accuracy_delta") and c["passed"] is False for c in t["checks"])
    assert "FAIL text-classification-onnxruntime-int8@linux-aarch64" in r.stdout
    assert "--platform linux-aarch64" in t["repro"]


@pytest.mark.arm64
def test_worker_runs_on_aarch64(default_arm64):
    """The runtime's answers come from the aarch64 build (the worker reports its machine), not from the host."""
    import numpy as np

    from runtimes.arm64.runtime import EmulatedArm64Runtime
    from runtimes.artifact import load_artifact
    from runtimes.registry import load_runtime

    art = default_arm64["text-classification"]
    feed = {"input_ids": np.array([[101, 7592, 2088, 102]], np.int64), "attention_mask": np.ones((1, 4), np.int64)}
    with EmulatedArm64Runtime(load_artifact(art)) as arm, load_runtime(art) as host:
        d = arm.describe()
        assert d["platform"].startswith("linux-aarch64") and arm.facts["machine"] == "aarch64"
        assert d["onnxruntime"] == host.describe()["onnxruntime"]
        np.testing.assert_allclose(arm.infer(feed)["logits"], host.infer(feed)["logits"], atol=1e-3)
