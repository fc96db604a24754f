"""The real-size serve report (benchmarks/serve_bench/realsize.py): typed, versioned, read through report_io. The
committed version-1 reference reads as version 2 and renders its committed Markdown; malformed documents are
ReportErrors that name the field; the writer writes NAME.{json,md} that read back."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks.report_io import ReportError, as_dict
from benchmarks.serve_bench import realsize

REFERENCE = Path(__file__).parents[1] / "docs" / "serve-bench" / "realsize.json"


def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def test_the_committed_version_1_file_reads_as_version_2_with_every_figure_kept():
    doc = reference()
    assert doc["schema_version"] == 1
    up = realsize.upgrade_from_1(doc)
    assert up["schema_version"] == 2 and doc["schema_version"] == 1  # a new dict
    for old, new in zip(doc["rows"], up["rows"]):
        assert set(new["served"]) == {"ours", "infinity"}  # the engines measured in that run
        assert new["served"]["ours"] == old["ours"] and new["served"]["infinity"] == old["infinity"]
        assert {k: v for k, v in new.items() if k != "served"} == {k: v for k, v in old.items()
                                                                 if k not in ("ours", "infinity")}
    report = realsize.read_report(doc)
    assert [r.tokens for r in report.rows] == [16, 32, 64, 128]
    assert report.rows[0].served["ours"].requests == 560 and report.engines["infinity"].exit_code == -15
    assert as_dict(report) == up  # round trip


def test_the_committed_file_and_its_upgrade_render_the_committed_markdown():
    md = REFERENCE.with_suffix(".md").read_text()
    assert realsize.to_markdown(reference()) == md
    assert realsize.to_markdown(realsize.upgrade_from_1(reference())) == md
    assert "| 16 | 33.8 | 94.4 | 69.6 (14.06) | 50.0 (19.78) | 2.06x | 1.48x | 212.0 | 4.24x |" in md


@pytest.mark.parametrize("break_it, field", [
    (lambda d: d["rows"][1]["served"]["ours"].update(rps="fast"), "rows[1].served.ours.rps"),
    (lambda d: d["rows"][0].pop("transformers"), "missing field(s) transformers"),
    (lambda d: d.pop("dim"), "missing field(s) dim"),
    (lambda d: d["engines"]["ours"].update(ready_s=None), "engines.ours.ready_s"),
    (lambda d: d["published"].update(infinity_rps=[212.0]), "published.infinity_rps"),
    (lambda d: d["rows"][0].update(ours={"rps": 1.0}), "unknown field(s) ours"),
])
def test_a_malformed_report_is_a_report_error_naming_the_field(break_it, field):
    d = realsize.upgrade_from_1(reference())
    break_it(d)
    with pytest.raises(ReportError, match="malformed realsize.json") as e:
        realsize.to_markdown(d)
    assert field in str(e.value)


def test_a_version_1_row_with_a_malformed_step_is_a_report_error_too():
    d = reference()
    d["rows"][2]["infinity"]["errors"] = "none"
    with pytest.raises(ReportError, match=r"rows\[2\]\.served\.infinity\.errors"):
        realsize.to_markdown(d)


@pytest.mark.parametrize("version", [None, 0, 3, "2"])
def test_another_schema_version_is_a_report_error(version):
    d = realsize.upgrade_from_1(reference())
    d["schema_version"] = version
    with pytest.raises(ReportError, match="schema version") as e:
        realsize.read_report(d)
    assert "make bench-serve" in str(e.value)


def report(rows, engines=None, failures=()) -> dict:
    """A real-size report document built from the typed rows, through JSON."""
    r = realsize.RealSizeReport(
        "serve-bench-realsize", "now", "c", "a", "base-random", "onnxruntime", "fp32", 768, {"texts": 8},
        {"cpu": {"flags": {}}}, realsize.PUBLISHED,
        engines or {"ours": realsize.Engine("distilbert-deploy serve", "x", 1.0, 0)}, tuple(failures), tuple(rows))
    return json.loads(json.dumps(as_dict(r)))


def row(n: int, t: float, served=None) -> realsize.TokenRow:
    call = lambda rps: realsize.InProcess(rps, 1.0, 10)  # noqa: E731
    return realsize.TokenRow(n, {"before": call(t)}, {"before": call(2 * t)}, call(t), call(2 * t),
                             {"ours": realsize.Served(3 * t, 1.0, 2.0, 100, 0)} if served is None else served)


def test_the_report_sets_the_published_ratios_beside_ours():
    md = realsize.to_markdown(report([row(16, 10.0), row(64, 5.0)]))
    assert "| 16 | 10.0 | 20.0 | 30.0 (1.00) | 3.00x | 212.0 | 4.24x |" in md
    assert "| 64 | 5.0 | 10.0 | 15.0 (1.00) | 3.00x | 97.0 | – |" in md  # no published transformers figure at 64


def test_an_engine_that_failed_part_way_shows_dashes_and_its_failure():
    engines = {"ours": realsize.Engine("distilbert-deploy serve", "x", 1.0, 0),
               "kserve-grpc": realsize.Engine("kserve 0.15 (gRPC)", "y", 2.0, None)}
    grpc = {"ours": realsize.Served(30.0, 1.0, 2.0, 100, 0), "kserve-grpc": realsize.Served(20.0, 2.0, 3.0, 90, 4)}
    d = report([row(16, 10.0, grpc), row(32, 10.0)], engines, [realsize.Failure("kserve-grpc", "ServeBenchError: x\n")])
    md = realsize.to_markdown(d)
    assert "| 16 | 10.0 | 20.0 | 30.0 (1.00) | 20.0 (2.00), 4 err | 3.00x | 2.00x | 212.0 | 4.24x |" in md
    assert "| 32 | 10.0 | 20.0 | 30.0 (1.00) | – | 3.00x | – | 150.0 | 3.75x |" in md
    assert "| kserve-grpc | `y` | 2.0 | None |" in md
    assert "### Failure: kserve-grpc\n\n```\nServeBenchError: x\n```" in md


def test_write_writes_the_named_json_and_markdown_that_read_back(tmp_path):
    d = report([row(16, 10.0)])
    paths = realsize.write(d, tmp_path, "rs-quick")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rs-quick.json", "rs-quick.md"]
    written = json.loads(paths["json"].read_text())
    assert written["schema_version"] == 2 and written == d
    assert paths["md"].read_text() == realsize.to_markdown(written)


def test_write_of_a_malformed_report_writes_nothing(tmp_path):
    d = report([row(16, 10.0)])
    bad = copy.deepcopy(d)
    bad["rows"][0]["tokens"] = "16"
    with pytest.raises(ReportError, match=r"rows\[0\]\.tokens"):
        realsize.write(bad, tmp_path, "realsize")
    assert not list(tmp_path.iterdir())
