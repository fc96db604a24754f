"""benchmarks.report_io: a typed report reads back field by field from its dataclass's hints, and anything else
is a ReportError naming the field; writes round-trip."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from benchmarks.report_io import ReportError, as_dict, load, parse, write_report

DOCS = Path(__file__).resolve().parents[1] / "docs"


@dataclass(frozen=True)
class Row:
    name: str
    ms: float
    size: int | None = None


@dataclass(frozen=True)
class Inner:
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Doc:
    FILE: ClassVar[str] = "doc.json"
    MADE_BY: ClassVar[str] = "make doc"
    SCHEMA_VERSION: ClassVar[int] = 3
    title: str
    inner: Inner | None
    by_name: dict[str, Row]
    flags: dict
    schema_version: int = SCHEMA_VERSION


GOOD = {"schema_version": 3, "title": "t", "inner": {"rows": [{"name": "a", "ms": 1, "size": 4}]},
        "by_name": {"b": {"name": "b", "ms": 2.5}}, "flags": {"x": [1, "y"]}}


def test_a_document_builds_typed_and_reads_back_as_itself():
    doc = parse(Doc, GOOD)
    assert doc.inner.rows == (Row("a", 1.0, 4),) and isinstance(doc.inner.rows[0].ms, float)
    assert doc.by_name["b"] == Row("b", 2.5) and doc.flags == {"x": [1, "y"]}
    assert as_dict(doc) == {**GOOD, "inner": {"rows": [{"name": "a", "ms": 1.0, "size": 4}]},
                            "by_name": {"b": {"name": "b", "ms": 2.5, "size": None}}}


@pytest.mark.parametrize("change,names", [
    (lambda d: d.update(schema_version=2), "schema version 2"),
    (lambda d: d.pop("title"), "missing field(s) title"),
    (lambda d: d.update(extra=1), "unknown field(s) extra"),
    (lambda d: d["inner"]["rows"][0].update(ms="fast"), "Doc.inner.rows[0].ms: expected float"),
    (lambda d: d["inner"]["rows"][0].update(size=True), "Doc.inner.rows[0].size: expected int"),
    (lambda d: d["inner"].update(rows={"name": "a"}), "Doc.inner.rows: expected a list"),
    (lambda d: d["by_name"]["b"].pop("ms"), "Doc.by_name.b: missing field(s) ms"),
    (lambda d: d.update(flags=[1]), "Doc.flags: expected an object"),
])
def test_a_malformed_document_is_a_report_error_that_names_the_field(change, names):
    bad = json.loads(json.dumps(GOOD))
    change(bad)
    with pytest.raises(ReportError, match="make doc") as e:
        parse(Doc, bad, "here.json")
    assert names in str(e.value) and "here.json" in str(e.value)


def test_none_is_allowed_where_the_type_says_so():
    assert parse(Doc, {**GOOD, "inner": None}).inner is None


def test_write_report_writes_json_and_markdown_that_read_back(tmp_path):
    doc = parse(Doc, GOOD)
    paths = write_report(doc, tmp_path / "out", lambda d: f"# {d['title']} {len(d['inner']['rows'])}\n")
    assert load(Doc, paths["json"]) == doc
    assert paths["md"].read_text() == "# t 1\n" and paths["md"].name == "doc.md"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["doc.json", "doc.md"]  # no temp file left


def test_a_failing_renderer_writes_nothing(tmp_path):
    with pytest.raises(ZeroDivisionError):
        write_report(parse(Doc, GOOD), tmp_path, lambda d: str(1 / 0))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module,cls,rel", [
    ("benchmarks.trt_builds", "TrtBuildsReport", "tensorrt/trt-builds.json"),
    ("benchmarks.arm_drift", "DriftReport", "edge/drift.json"),
])
def test_committed_reports_parse_and_round_trip(module, cls, rel):
    import importlib

    report_cls = getattr(importlib.import_module(module), cls)
    doc = json.loads((DOCS / rel).read_text())
    assert as_dict(parse(report_cls, doc)) == doc
