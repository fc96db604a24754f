"""benchmarks.artifact_matrix: builds what is missing, marks types that do not fit a task, judges the rest; its
matrix.json is a typed report (a version 1 file reads through the upgrade, a malformed one names the field)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import artifact_matrix
from benchmarks.report_io import ReportError, as_dict, parse

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "matrix" / "matrix.json"
NULLS = {"path": None, "why": None, "seconds": None, "exit": None, "error": None, "parity": None, "precision": None,
         "checks": None, "failed": None}  # a version 2 cell: every field, null where it does not apply


def _cell(status: str, **given) -> dict:
    return {"status": status, **NULLS, **given}


def _matrix(task: str, cell: dict, **header) -> dict:
    return {"schema_version": 2, "model": "m", "corpus": "ci", "types": ["x"], "summaries": {"x": "a type"},
            "tasks": [task], "cells": {task: {"x": cell}}, "command": "c", **header}


@pytest.mark.slow
def test_tiny_matrix_builds_judges_and_marks_non_applicable(tmp_path):
    out = tmp_path / "report"
    rc = artifact_matrix.main(["--model", "tiny", "--artifacts", str(tmp_path / "art"), "--out", str(out),
                               "--corpus", "ci", "--types", "onnxruntime-fp32-cls",
                               "--tasks", "text-classification,token-classification"])
    report = json.loads((out / "matrix.json").read_text())
    cells = report["cells"]
    # the source type is built too, because the requested one starts from it
    assert report["types"] == ["onnxruntime-fp32", "onnxruntime-fp32-cls"]
    assert cells["text-classification"]["onnxruntime-fp32-cls"]["status"] == "built"
    assert cells["text-classification"]["onnxruntime-fp32-cls"]["parity"] == "pass"
    assert cells["token-classification"]["onnxruntime-fp32-cls"] == _cell("n/a", why="the head reads every token")
    assert cells["token-classification"]["onnxruntime-fp32"]["parity"] == "pass"
    assert rc == 0
    md = (out / "matrix.md").read_text()
    assert "| `onnxruntime-fp32-cls` | pass (Δacc +0.0000) | n/a |" in md
    # a second run reuses what exists
    artifact_matrix.main(["--model", "tiny", "--artifacts", str(tmp_path / "art"), "--out", str(out), "--no-parity",
                          "--types", "onnxruntime-fp32", "--tasks", "text-classification"])
    again = json.loads((out / "matrix.json").read_text())["cells"]["text-classification"]["onnxruntime-fp32"]
    assert again["status"] == "reused"


@pytest.mark.tensorrt
def test_tensorrt_cells_are_built_but_never_shown_as_pass_without_their_gpu(tmp_path):
    from conftest import require_rtx, see_gpu

    require_rtx()  # the matrix builds RTX engines for named targets
    from runtimes.tensorrt_backend import host_facts
    from runtimes.tensorrt_flavor import RTX_DEFAULT_TARGETS

    out = tmp_path / "report"
    rc = artifact_matrix.main(["--model", "tiny", "--artifacts", str(tmp_path / "art"), "--out", str(out),
                               "--corpus", "ci", "--types", "tensorrt-rtx-fp16", "--tasks", "text-classification"])
    cell = json.loads((out / "matrix.json").read_text())["cells"]["text-classification"]["tensorrt-rtx-fp16"]
    md = (out / "matrix.md").read_text()
    engine = tmp_path / "art" / "tiny" / "text-classification" / "tensorrt-rtx-fp16"
    assert (engine / "model.engine").is_file()
    needs = "needs an NVIDIA GPU with TensorRT (sm80, sm86, sm89, sm120)"
    if host_facts("tensorrt-rtx").compute_capability in RTX_DEFAULT_TARGETS:  # its GPU: judged like any artifact
        assert cell["status"] == "built" and cell["parity"] == "pass" and cell["precision"] == "fp16", cell
        assert "| `tensorrt-rtx-fp16` | pass" in md
    else:  # no GPU, or one TensorRT-RTX has no target for (an H100/H200 is sm90): built, never judged here
        assert cell["status"] == "not run here" and cell["parity"] is None
        assert cell["why"] == needs
        assert f"| `tensorrt-rtx-fp16` | built, not run here: {needs} |" in md
    assert rc == 0  # the source type passed; an engine this machine cannot run is not a failure of its run
    # the same engine as an H200 sees it (sm90: refused, so never judged) and as an RTX 4090 does (sm89: judged)
    with pytest.MonkeyPatch.context() as mp:
        see_gpu(mp, ("NVIDIA H200", (9, 0)))
        assert artifact_matrix.not_runnable_here(engine) == needs
        see_gpu(mp, ("NVIDIA GeForce RTX 4090", (8, 9)))
        assert artifact_matrix.not_runnable_here(engine) is None
        see_gpu(mp, None)
        assert artifact_matrix.not_runnable_here(engine) == needs


def test_failed_build_is_shown_with_its_error(tmp_path):
    report = _matrix("text-classification", _cell("build-failed", path="a/x", seconds=1.5, exit=2, error="boom"))
    md = artifact_matrix.render(report)
    assert "| `x` | BUILD FAILED |" in md and "text-classification / x: boom" in md


def test_a_cell_judged_by_output_cosine_says_so():
    """An untrained head is judged by flat_head_cosine, not its answers: the cell and a footnote say so."""
    cell = _cell("reused", path="a/x", parity="pass", precision="int8", checks={"flat_head_cosine": 0.9871},
                 failed=[])
    report = _matrix("question-answering", cell, corpus="full")
    md = artifact_matrix.render(report)
    assert "| `x` | pass (cos 0.987†) |" in md and "† The head is untrained" in md
    cell["checks"] = {"exact_span_agreement": 1.0}
    assert "†" not in artifact_matrix.render(report)


def test_unknown_type_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        artifact_matrix.main(["--types", "onnxruntime-fp64", "--out", str(tmp_path)])
    assert e.value.code == 2 and "unknown artifact type" in capsys.readouterr().err


def test_a_run_without_builds_writes_a_version_2_matrix(tmp_path):
    """--no-build --no-parity: nothing is built, so every applicable cell is `not built` (and the run fails)."""
    out = tmp_path / "report"
    rc = artifact_matrix.main(["--model", "tiny", "--artifacts", str(tmp_path / "art"), "--out", str(out),
                               "--no-build", "--no-parity", "--types", "onnxruntime-fp32-cls",
                               "--tasks", "text-classification,token-classification"])
    assert rc == 1
    written = json.loads((out / "matrix.json").read_text())
    assert written["schema_version"] == 2 and written["tasks"] == ["text-classification", "token-classification"]
    art = tmp_path / "art" / "tiny"
    assert written["cells"] == {
        "text-classification": {
            "onnxruntime-fp32": _cell("not built", path=str(art / "text-classification" / "onnxruntime-fp32")),
            "onnxruntime-fp32-cls": _cell("not built", path=str(art / "text-classification" / "onnxruntime-fp32-cls"))},
        "token-classification": {
            "onnxruntime-fp32": _cell("not built", path=str(art / "token-classification" / "onnxruntime-fp32")),
            "onnxruntime-fp32-cls": _cell("n/a", why="the head reads every token")}}
    md = (out / "matrix.md").read_text()
    assert "| `onnxruntime-fp32-cls` | not built | n/a |" in md
    assert "- `onnxruntime-fp32-cls`: ONNX fp32, last layer [CLS] row only; n/a: the head reads every token" in md


def test_the_committed_version_1_matrix_reads_through_the_upgrade_and_round_trips():
    v1 = json.loads(COMMITTED.read_text())
    assert v1["schema_version"] == 1
    with pytest.raises(ReportError, match="schema version 1"):  # only through the upgrade
        parse(artifact_matrix.MatrixReport, v1)
    v2 = artifact_matrix.upgrade_v1(v1)
    assert v2["schema_version"] == 2
    # the upgrade only adds nulls: every committed value is kept, every cell has every field
    for task, row in v1["cells"].items():
        assert row.keys() == v2["cells"][task].keys()
        for name, cell in row.items():
            upgraded = v2["cells"][task][name]
            assert upgraded == {**NULLS, **cell}
            assert {k: v for k, v in upgraded.items() if k in cell} == cell
    r = parse(artifact_matrix.MatrixReport, v2)
    assert r.types[0] == "onnxruntime-fp32" and len(r.tasks) == 6
    judged = r.cells["text-classification"]["openvino-int8"]
    assert judged.status == "reused" and judged.parity == "pass" and judged.seconds is None
    assert isinstance(judged.checks["accuracy_delta"], float) and judged.failed == ()
    na = r.cells["token-classification"]["onnxruntime-fp32-cls"]
    assert na.status == "n/a" and na.why == "the head reads every token" and na.path is None
    assert json.loads(json.dumps(as_dict(r))) == v2
    assert artifact_matrix.render(v1) == artifact_matrix.render(v2) == COMMITTED.with_suffix(".md").read_text()


@pytest.mark.parametrize("change, field", [
    (lambda d: d["cells"]["t"]["x"].update(seconds="1.5"), r"cells\.t\.x\.seconds"),
    (lambda d: d["cells"]["t"]["x"].update(failed="accuracy_delta"), r"cells\.t\.x\.failed"),
    (lambda d: d["cells"]["t"]["x"].pop("error"), "missing field.*error"),
    (lambda d: d["cells"]["t"]["x"].update(built_by="me"), "unknown field.*built_by"),
    (lambda d: d.update(tasks="t"), r"MatrixReport\.tasks"),
    (lambda d: d.pop("command"), "missing field.*command"),
])
def test_a_malformed_matrix_names_the_field(change, field):
    doc = _matrix("t", _cell("build-failed", path="a/x", seconds=1.5, exit=2, error="boom"))
    artifact_matrix.render(doc)  # well-formed as built
    change(doc)
    with pytest.raises(ReportError, match=field):
        artifact_matrix.render(doc)


def test_a_version_1_cell_with_an_unknown_field_is_refused_and_other_versions_are_not_upgraded():
    v1 = {**_matrix("t", {"status": "build-failed", "path": "a/x", "seconds": 1.5, "exit": 2, "error": "boom"}),
          "schema_version": 1}
    assert "BUILD FAILED" in artifact_matrix.render(v1)
    v1["cells"]["t"]["x"]["exit_code"] = 2
    with pytest.raises(ReportError, match="unknown field.*exit_code"):
        artifact_matrix.render(v1)
    with pytest.raises(ReportError, match="schema version 3"):
        artifact_matrix.render(_matrix("t", _cell("n/a", why="w"), schema_version=3))
