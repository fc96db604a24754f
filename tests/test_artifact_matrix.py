"""benchmarks.artifact_matrix: builds what is missing, marks types that do not fit a task, judges the rest."""
from __future__ import annotations

import json

import pytest

from benchmarks import artifact_matrix


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
    assert cells["token-classification"]["onnxruntime-fp32-cls"] == {"status": "n/a",
                                                                       "why": "the head reads every token"}
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
        assert cell["status"] == "not run here" and "parity" not in cell
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
    report = {"model": "m", "corpus": "ci", "command": "c", "tasks": ["text-classification"], "types": ["x"],
              "summaries": {"x": "a type"}, "cells": {"text-classification": {"x": {"status": "build-failed",
                                                                                  "error": "boom"}}}}
    md = artifact_matrix.render(report)
    assert "| `x` | BUILD FAILED |" in md and "text-classification / x: boom" in md


def test_a_cell_judged_by_output_cosine_says_so():
    """An untrained head is judged by flat_head_cosine, not its answers: the cell and a footnote say so."""
    cell = {"status": "reused", "parity": "pass", "precision": "int8", "checks": {"flat_head_cosine": 0.9871},
            "failed": []}
    report = {"model": "m", "corpus": "full", "command": "c", "tasks": ["question-answering"], "types": ["x"],
              "summaries": {"x": "a type"}, "cells": {"question-answering": {"x": cell}}}
    md = artifact_matrix.render(report)
    assert "| `x` | pass (cos 0.987†) |" in md and "† The head is untrained" in md
    cell["checks"] = {"exact_span_agreement": 1.0}
    assert "†" not in artifact_matrix.render(report)


def test_unknown_type_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        artifact_matrix.main(["--types", "onnxruntime-fp64", "--out", str(tmp_path)])
    assert e.value.code == 2 and "unknown artifact type" in capsys.readouterr().err
