"""benchmarks.edge_report: edge.json is a typed report (the committed one parses, round-trips and re-renders; a
malformed one is a ReportError naming the field), written through the shared report I/O; an artifact that is not
an accuracy-controlled ORT INT8 one is refused from its manifest, before any parity run."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import edge_report
from benchmarks.edge_report import EdgeCheck, EdgeReport
from benchmarks.report_io import ReportError, as_dict, parse, write_report
from runtimes.errors import ConfigError

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "edge" / "edge.json"


@pytest.fixture
def doc() -> dict:
    return json.loads(COMMITTED.read_text())


def test_the_committed_report_parses_into_the_dataclasses_and_round_trips(doc):
    r = parse(EdgeReport, doc)
    assert [Path(row.artifact).name for row in r.rows] == ["onnxruntime-static-arm64", "onnxruntime-dynamic-arm64"]
    static = r.rows[0]
    assert (static.method, static.kept_fp32, static.quantizable) == ("static", 20, 36)
    assert static.size_bytes == 48859272 and static.parent_bytes == 90964021 and static.word_embeddings_int8
    assert static.host.passed and not static.arm.passed and static.arm.cases == 306
    assert static.arm.checks["accuracy_delta"] == EdgeCheck(-0.010000000000000009, False, static.arm.checks[
        "accuracy_delta"].detail)
    assert static.host.checks["max_abs"].passed is None  # reported, not judged
    assert isinstance(static.host.checks["errors"].value, float)
    assert r.arm_env["qemu_cpu"] == "neoverse-n1"
    assert json.loads(json.dumps(as_dict(r))) == doc
    assert edge_report.to_markdown(doc) == COMMITTED.with_suffix(".md").read_text()


def test_writing_the_committed_report_again_gives_the_same_files(doc, tmp_path):
    paths = write_report(parse(EdgeReport, doc), tmp_path, edge_report.to_markdown)
    assert paths["json"] == tmp_path / "edge.json" and paths["md"] == tmp_path / "edge.md"
    assert paths["json"].read_text() == COMMITTED.read_text()
    assert paths["md"].read_text() == COMMITTED.with_suffix(".md").read_text()


@pytest.mark.parametrize("change, field", [
    (lambda d: d["rows"][0].update(size_bytes="48859272"), r"rows\[0\]\.size_bytes"),
    (lambda d: d["rows"][1]["arm"].update(passed="yes"), r"rows\[1\]\.arm\.passed"),
    (lambda d: d["rows"][0]["host"]["checks"]["errors"].update(passed="true"), r"host\.checks\.errors\.passed"),
    (lambda d: d["rows"][0]["host"]["checks"]["cosine"].pop("detail"), "missing field.*detail"),
    (lambda d: d["rows"][0].pop("parent_bytes"), "missing field.*parent_bytes"),
    (lambda d: d["rows"][0].update(engine="x"), "unknown field.*engine"),
    (lambda d: d.update(rows={}), r"EdgeReport\.rows"),
    (lambda d: d.pop("qemu"), "missing field.*qemu"),
])
def test_a_malformed_report_names_the_field(doc, change, field):
    bad = copy.deepcopy(doc)
    change(bad)
    with pytest.raises(ReportError, match=field):
        edge_report.to_markdown(bad)


def test_another_schema_version_is_refused(doc):
    for version in (None, 0, 2):
        with pytest.raises(ReportError, match=f"schema version {version}"):
            edge_report.to_markdown({**doc, "schema_version": version})


def _manifest(recipe: dict):
    return lambda path: SimpleNamespace(task="text-classification", recipe=recipe)


def test_an_arm64_manifest_gives_the_row_fields(monkeypatch):
    monkeypatch.setattr(edge_report, "read_manifest", _manifest({
        "method": "dynamic", "per_channel": False, "word_embeddings": {"int8": True},
        "accuracy_control": {"kept_fp32": ["a", "b"], "quantizable_nodes": 36},
        "size_bytes": {"parent_onnx": 900, "onnx": 500, "ort": 400}}))
    assert edge_report.sizes_and_recipe(Path("art/x")) == {
        "artifact": "art/x", "task": "text-classification", "method": "dynamic", "per_channel": False,
        "word_embeddings_int8": True, "kept_fp32": 2, "quantizable": 36, "size_bytes": 400, "parent_bytes": 900}


@pytest.mark.parametrize("recipe", [
    {"format": "onnx"},  # an fp32 export
    {"method": "int8", "size_bytes": {"parent_onnx": 900, "onnx": 500}},  # no accuracy control
    {"method": "static", "accuracy_control": {"kept_fp32": [], "quantizable_nodes": 36}},  # no sizes
])
def test_an_artifact_that_is_not_arm64_int8_is_refused_from_its_manifest(monkeypatch, recipe):
    monkeypatch.setattr(edge_report, "read_manifest", _manifest(recipe))
    with pytest.raises(ConfigError, match="art/x is not an accuracy-controlled ORT INT8 artifact"):
        edge_report.sizes_and_recipe(Path("art/x"))


def test_a_parity_target_becomes_a_verdict_keeping_the_check_order():
    checks = [SimpleNamespace(name="errors", value=0, passed=True, detail=""),
              SimpleNamespace(name="cosine", value=0.9, passed=None, detail="worst case")]
    target = SimpleNamespace(passed=False, platform="linux-aarch64", cases=3, checks=checks, seconds=2.5)
    v = edge_report.verdict(target)
    assert list(v.checks) == ["errors", "cosine"]
    assert v.checks["cosine"] == EdgeCheck(0.9, None, "worst case")
    assert type(v.checks["errors"].value) is float  # written as 0.0, like the committed report's
    assert (v.passed, v.platform, v.cases, v.seconds) == (False, "linux-aarch64", 3, 2.5)
