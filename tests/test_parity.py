"""The parity suite: every task x backend x precision against the PyTorch fp32 reference, on the tiny
model (every row) plus a real-weight slice (slow). Ids read like `question-answering-onnxruntime-fp32`."""
import json
import shutil

import pytest

from runtimes.hardware import cpu_info, isa
from runtimes.heads import TASKS
from runtimes.registry import BACKENDS

from conftest import require_backend

# (backend, precision, device, marks): every backend in the registry must have rows here.
ROWS = (
    ("onnxruntime", "fp32", "cpu", ()),
    ("torch", "fp32", "cpu", ()),
    ("torch", "bf16", "cpu", ()),
    ("torch", "fp16", "cuda", (pytest.mark.gpu,)),
    ("openvino", "fp32", "cpu", (pytest.mark.openvino,)),
    ("openvino", "int8", "cpu", (pytest.mark.openvino,)),
    ("tensorrt", "fp16", "cuda", (pytest.mark.gpu, pytest.mark.tensorrt)),
)
MATRIX = [pytest.param(task, backend, precision, device, id=f"{task}-{backend}-{precision}", marks=marks)
          for task in TASKS for backend, precision, device, marks in ROWS]


def parity(paths, **kw):
    from benchmarks.parity import ParityConfig, run_parity

    return run_parity(ParityConfig(artifacts=tuple(paths), **kw))


def test_every_backend_has_parity_rows():
    assert set(BACKENDS) <= {row[0] for row in ROWS}, "add parity ROWS for every registry backend"


@pytest.mark.parametrize("task,backend,precision,device", MATRIX)
def test_parity(tiny_artifacts, tiny_openvino, tiny_tensorrt, task, backend, precision, device):
    require_backend(backend)
    path = {"openvino": lambda: tiny_openvino(task, precision), "tensorrt": lambda: tiny_tensorrt(task)}.get(
        backend, lambda: tiny_artifacts[task, backend])()
    report = parity([path], precisions=(precision,), device=device)
    (t,) = report.targets
    failing = [c for c in t.checks if c.passed is False]
    assert report, f"{t.id} fails parity: {failing}; {[f.detail for f in t.failures[:5]]}; reproduce: {t.repro}"
    assert t.id == f"{task}-{backend}-{precision}" and t.cases >= 10
    suite = json.loads((path / "manifest.json").read_text())["parity"]["suite"]
    assert suite["runs"][precision]["passed"] is True
    if backend == "onnxruntime":
        assert "export_validation" in json.loads((path / "manifest.json").read_text())["parity"]


def _copy(path, tmp_path):
    out = tmp_path / path.name
    shutil.copytree(path, out)
    return out


def test_damaged_weights_fail_with_a_clear_report(tiny_artifacts, tmp_path):
    """One weight tensor scaled by 3% inside the ONNX graph (checksums refreshed, as a buggy builder
    would leave it): numeric checks fail and every failing case carries its repro command."""
    require_backend("onnxruntime")
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from benchmarks.parity.report import to_markdown
    from runtimes.artifact import sha256_file, update_manifest

    path = _copy(tiny_artifacts["text-classification", "onnxruntime"], tmp_path)
    model = onnx.load(str(path / "model.onnx"))
    init = next(t for t in model.graph.initializer if "classifier.weight" in t.name)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.03), init.name))
    onnx.save(model, str(path / "model.onnx"))
    update_manifest(path, files={**json.loads((path / "manifest.json").read_text())["files"],
                                 "model.onnx": sha256_file(path / "model.onnx")})
    report = parity([path])
    assert not report and not report.passed
    (t,) = report.targets
    failed = {c.name for c in t.checks if c.passed is False}
    assert {"max_abs", "rel_err"} <= failed
    assert t.failures and all(f.repro.startswith(f"distilbert-deploy parity {path}") and "--case" in f.repro
                              for f in t.failures)
    md = to_markdown(report.to_dict())
    assert "# Parity: FAILED" in md and "FAIL `text-classification-onnxruntime-fp32`" in md and "--case" in md
    assert json.loads((path / "manifest.json").read_text())["parity"]["suite"]["passed"] is False


def test_wrong_label_order_fails(tiny_artifacts, tmp_path):
    """Identical logits, labels listed in the wrong order: only the task-level check can see it."""
    require_backend("onnxruntime")
    from runtimes.artifact import update_manifest

    path = _copy(tiny_artifacts["text-classification", "onnxruntime"], tmp_path)
    labels = json.loads((path / "manifest.json").read_text())["labels"]
    update_manifest(path, labels=tuple(reversed(labels)))
    (t,) = parity([path], write_manifest=False).targets
    checks = {c.name: c for c in t.checks}
    assert checks["max_abs"].passed and checks["label_agreement"].passed is False
    assert any("reference 'negative', candidate 'positive'" in f.detail or "reference 'positive', candidate 'negative'"
               in f.detail for f in t.failures)


def test_cli_exit_codes(tiny_artifacts, tmp_path, capsys):
    require_backend("onnxruntime")
    from distilbert_deploy.cli import main

    path = tiny_artifacts["multiple-choice", "onnxruntime"]
    assert main(["parity", str(path), "--out", str(tmp_path), "--no-manifest", "--case", "mc/"]) == 0
    d = json.loads((tmp_path / "parity.json").read_text())
    assert d["passed"] is True and d["schema_version"] == 2 and (tmp_path / "parity.md").is_file()
    # the machine, from the one cpu_info(): model and ISA flags in the JSON, a Machine line in the Markdown
    cpu = cpu_info()
    assert {k: d["environment"]["cpu"][k] for k in ("model", "flags")} == {"model": cpu["model"], "flags": cpu["flags"]}
    assert "gpu" in d["environment"]
    machine = next(x for x in (tmp_path / "parity.md").read_text().splitlines() if x.startswith("Machine:"))
    assert cpu["model"] in machine and all(name in machine for name in isa(cpu))
    # a tolerance nobody can meet: a failing verdict, exit 1, with the repro command printed
    assert main(["parity", str(path), "--out", str(tmp_path), "--no-manifest", "--case", "mc/0",
                 "--tol", "max_abs=0", "--tol", "min_cosine=1.1"]) == 1
    assert "reproduce: distilbert-deploy parity" in capsys.readouterr().out
    assert main(["parity", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert main(["parity", str(path), "--tol", "bogus=1"]) == 2


def test_version_1_report_still_reads_and_renders():
    """Before the machine was recorded (schema 1): no environment, the Markdown says so."""
    from benchmarks.parity.report import SCHEMA_VERSION, Report, to_markdown

    v1 = {"schema_version": 1, "passed": True, "targets": [], "corpus": {"size": "ci", "version": 1, "file": "c"},
          "created": "2025-01-01T00:00:00+00:00", "command": "distilbert-deploy parity x"}
    r = Report.from_dict(v1)
    assert r.environment == {} and r.schema_version == 1 and SCHEMA_VERSION == 2
    assert "Machine: not recorded" in to_markdown(v1)


def test_corpus_is_versioned_ids_only():
    from benchmarks.parity import corpus

    spec = corpus.spec()
    assert spec["version"] >= 1 and len(spec["tweets"]["ids"]) == spec["tweets"]["count"]
    assert corpus.select_tweet_ids(spec["tweets"]["seed"], spec["tweets"]["count"]) == spec["tweets"]["ids"]
    assert set(spec["tweets"]) == {"selection", "seed", "count", "ids"}  # ids, never copies of the tweets
    assert all(isinstance(i, int) for i in spec["tweets"]["ids"])


@pytest.mark.slow
def test_real_weights_text_classification_onnxruntime(default_artifact, tmp_path):
    """The default model's tweet classifier: 100% label agreement, max abs error <= 1e-4, zero accuracy delta."""
    import shutil

    require_backend("onnxruntime")
    path = tmp_path / "tc"
    shutil.copytree(default_artifact("text-classification"), path)  # parity writes its verdict into the manifest
    (t,) = parity([path]).targets
    checks = {c.name: c for c in t.checks}
    assert t.passed, t.failures[:5]
    assert checks["label_agreement"].value == 1.0 and checks["max_abs"].value <= 1e-4
    assert checks["accuracy_delta"].value == 0.0 and "300 held-out" in checks["accuracy_delta"].detail
