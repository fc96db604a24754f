"""benchmarks.int8_floor: the FLOP count behind the floor, the report's arithmetic, and its typed schema
(benchmarks/int8_floor_report.py): the committed reports parse (version 3 through its upgrade) and round-trip,
a malformed one is a ReportError naming the field, and main writes through the shared report I/O."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks.int8_floor import model_flops, render
from benchmarks.report_io import ReportError, as_dict

DOCS = Path(__file__).resolve().parents[1] / "docs" / "int8-floor"
COMMITTED = sorted([DOCS / "int8-floor.json", *DOCS.glob("run*/int8-floor.json")])

BASE = {"dim": 768, "hidden_dim": 3072, "n_layers": 6}


def test_base_model_flops_match_the_published_figure():
    # DistilBERT-base at 1x128: about 11.2 GFLOP (the figure); linear in the batch
    assert model_flops(BASE, 1, 128) / 1e9 == pytest.approx(11.17, abs=0.01)
    assert model_flops(BASE, 8, 128) == pytest.approx(8 * model_flops(BASE, 1, 128))


def _row(name, kind, best_ms, floor_ms, gflop, peak):
    return {"name": name, "kind": kind, "what": "", "best_ms": best_ms, "median_ms": best_ms, "pct_of_floor":
            100 * floor_ms / best_ms, "executed_gflop": gflop, "pct_of_peak_executed": 100 * gflop / best_ms / peak * 1e3,
            "vs_eager": 1.0, "vs_plain_nncf": 1.0, "samples_ms": [best_ms]}


def _report(shapes, cpu=None, **top) -> dict:
    """A version-4 report document, as the writer lays it out."""
    return {"schema_version": 4, "cls_pruning": "reassociated", "model": "base-random", "task": "text-classification",
            "threads": 2, "timer": "t", "rounds": 1, "iters": 1,
            "cpu": cpu or {"model": "cpu", "logical_cpus": 2, "flags": {"avx512_vnni": True}},
            "versions": {"torch": "2"}, "shapes": shapes, **top}


def _shape(rows, peak=1773.0, floor_ms=11.17 / 1773.0 * 1e3, profile=None) -> dict:
    return {"shape": "1x128", "gflop": 11.17, "peak_gops": peak, "peak_gops_by_shape": {"128x768x768": peak},
            "peak_gops_1_thread": 929.0, "floor_ms": floor_ms, "rows": rows, "fastest_project": "cls",
            "profile": profile}


def test_report_shows_floor_share_and_the_rate_on_executed_flops():
    peak, floor_ms = 1773.0, 11.17 / 1773.0 * 1e3
    report = _report([_shape([_row("cls", "project", 7.80, floor_ms, 9.63, peak),
                              _row("dense", "project", 8.78, floor_ms, 11.17, peak)])])
    md = render(report)
    # the pruned candidate: 6.30 / 7.80 of the floor, but 9.63 GFLOP in 7.80 ms is 69.6% of the peak
    assert "| **cls** | project | 7.80 | 7.80 | 80.8% | 9.63 | 69.6% |" in md
    # a dense candidate's two shares are the same number
    assert "| dense | project | 8.78 | 8.78 | 71.8% | 11.17 | 71.8% |" in md


def test_report_records_and_shows_the_cpu_from_the_one_reader():
    """`run` records cpu_info() from runtimes.hardware; the Markdown shows its model and ISA names."""
    import benchmarks.int8_floor as floor
    from runtimes import hardware

    assert floor.cpu_info is hardware.cpu_info
    cpu = hardware.cpu_info()
    md = render(_report([], cpu=cpu))
    assert f"CPU {cpu['model']} " in md and f"ISA: {', '.join(hardware.isa(cpu)) or 'none of note'})" in md


@pytest.mark.openvino
def test_gemm_roles_count_flops_from_the_compiled_shapes():
    """Each FullyConnected node's FLOPs come from its compiled shapes (2 x rows x K x N), grouped by role."""
    import openvino as ov
    import numpy as np
    import openvino.opset13 as ops

    from benchmarks.int8_floor import gemm_roles
    from benchmarks.int8_floor_report import GemmTime

    x = ops.parameter([3, 16, 32], np.float32, name="x")
    h = ops.matmul(x, ops.constant(np.ones((32, 64), np.float32)), False, False)
    h.set_friendly_name("/distilbert/transformer/layer.0/ffn/lin1/MatMul")
    y = ops.matmul(h, ops.constant(np.ones((64, 8), np.float32)), False, False)
    y.set_friendly_name("/distilbert/transformer/layer.0/ffn/lin2/MatMul")
    compiled = ov.Core().compile_model(ov.Model([y], [x]), "CPU", {"PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer({"x": np.ones((3, 16, 32), np.float32)})
    info = [p for p in request.get_profiling_info() if p.status == p.Status.EXECUTED]
    by = {g["role"]: g for g in gemm_roles(compiled, info)}
    assert [GemmTime(**g).role for g in by.values()] == list(by)  # each fits the report's row (profile_openvino)
    assert set(by) == {"lin1", "lin2"} and by["lin1"]["count"] == by["lin2"]["count"] == 1
    assert by["lin1"]["gflop"] * 1e9 == pytest.approx(2 * 48 * 32 * 64, rel=1e-9)  # rows = 3 x 16
    assert by["lin2"]["gflop"] * 1e9 == pytest.approx(2 * 48 * 64 * 8, rel=1e-9)


# --------------------------------------------------------------------------- the typed report

def _plain(x):
    """JSON data as JSON would read it back (tuples become lists)."""
    return json.loads(json.dumps(x))


def test_every_committed_report_is_found():
    # the top-level report and run1..run13 (docs/int8-floor/README.md)
    assert len(COMMITTED) == 14 and DOCS / "run13" / "int8-floor.json" in COMMITTED


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_version_3_reports_upgrade_then_round_trip(path):
    from benchmarks.int8_floor_report import Int8FloorReport, read_report, upgrade_from_3

    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 3
    before = copy.deepcopy(doc)
    up = upgrade_from_3(doc)
    assert doc == before  # the committed document is not changed in place
    report = read_report(doc, str(path))
    assert isinstance(report, Int8FloorReport) and report.schema_version == 4
    assert _plain(as_dict(report)) == up  # nothing lost, nothing invented beyond the upgrade
    # the upgrade touches only the header and the profiles' gemms: take those away and the file is what it was
    stripped = {k: v for k, v in up.items() if k not in ("schema_version", "cls_pruning")}
    for s in stripped["shapes"]:
        if s["profile"]["gemms"] is None:
            del s["profile"]["gemms"]
    assert stripped == {k: v for k, v in doc.items() if k not in ("schema_version", "cls_pruning")}
    # run1-run4 used the earlier "rows" recipe, the rest the reassociated one (docs/int8-floor/README.md)
    earlier = path.parent.name in ("run1", "run2", "run3", "run4")
    assert report.cls_pruning == ("rows" if earlier else "reassociated")
    # and the version-4 document it became reads back the same
    assert read_report(_plain(as_dict(report))) == report
    shape = report.shapes[0]
    assert isinstance(shape.rows[0].samples_ms[0], float)
    assert shape.fastest_project in {r.name for r in shape.rows}


def test_profiles_before_the_gemm_table_read_as_none_and_render_without_it():
    from benchmarks.int8_floor_report import read_report

    doc = json.loads((DOCS / "run1" / "int8-floor.json").read_text())
    assert "gemms" not in doc["shapes"][0]["profile"]
    report = read_report(doc)
    assert all(s.profile.gemms is None for s in report.shapes)
    assert "Its GEMMs by role" not in render(doc)
    with_gemms = read_report(json.loads((DOCS / "run5" / "int8-floor.json").read_text()))
    assert with_gemms.shapes[0].profile.gemms[0].role == "lin1"  # the committed file's first (slowest) role


def _committed_v4() -> dict:
    from benchmarks.int8_floor_report import read_report

    return _plain(as_dict(read_report(json.loads((DOCS / "run5" / "int8-floor.json").read_text()))))


@pytest.mark.parametrize("break_it, field", [
    (lambda d: d["shapes"][0]["rows"][1].__setitem__("best_ms", "fast"), "best_ms"),
    (lambda d: d["shapes"][1]["rows"][0]["samples_ms"].append("x"), "samples_ms"),
    (lambda d: d["shapes"][0].pop("floor_ms"), "floor_ms"),
    (lambda d: d.pop("cls_pruning"), "cls_pruning"),
    (lambda d: d.__setitem__("cls_pruning", "columns"), "cls_pruning"),
    (lambda d: d.__setitem__("threads", 2.0), "threads"),
    # inside the optional profile report_io names the profile, not the leaf (it tries each option of X | None)
    (lambda d: d["shapes"][0]["profile"]["rows"][0].__setitem__("count", True), r"shapes\[0\]\.profile"),
    (lambda d: d["shapes"][1]["profile"]["gemms"][0].pop("gflop"), r"shapes\[1\]\.profile"),
    (lambda d: d["shapes"][0]["profile"].pop("gemms"), r"shapes\[0\]\.profile"),
    (lambda d: d["shapes"][0]["peak_gops_by_shape"].__setitem__("128x768x768", None), "peak_gops_by_shape"),
    (lambda d: d["shapes"][0]["rows"][0].__setitem__("speedup", 2.0), "speedup"),
])
def test_a_malformed_report_is_a_report_error_naming_the_field(break_it, field):
    doc = _committed_v4()
    render(doc)  # the unbroken document renders
    break_it(doc)
    with pytest.raises(ReportError, match=field):
        render(doc)


@pytest.mark.parametrize("version", [2, 5, None])
def test_other_schema_versions_are_refused(version):
    doc = _committed_v4()
    doc["schema_version"] = version
    with pytest.raises(ReportError, match="schema version"):
        render(doc)


def test_a_version_3_report_with_a_malformed_field_is_refused_too():
    doc = json.loads((DOCS / "int8-floor.json").read_text())
    doc["shapes"][0]["rows"][0]["median_ms"] = "slow"
    with pytest.raises(ReportError, match="median_ms"):
        render(doc)


def test_a_version_4_report_without_a_profile_renders_without_one():
    # --no-profile: the writer's null, and an earlier version-4 writer that left the key out
    doc = _report([_shape([_row("cls", "project", 7.80, 6.3, 9.63, 1773.0)])])
    assert doc["shapes"][0]["profile"] is None and "Per-layer profile" not in render(doc)
    del doc["shapes"][0]["profile"]
    assert "| **cls** | project | 7.80 |" in render(doc)


def test_main_writes_the_typed_report_and_its_markdown(tmp_path, monkeypatch, capsys):
    import benchmarks.int8_floor as floor
    from benchmarks.int8_floor_report import read_report

    report = read_report(json.loads((DOCS / "int8-floor.json").read_text()))
    seen = {}

    def fake_run(args):
        seen["args"] = args
        return report

    monkeypatch.setattr(floor, "run", fake_run)
    assert floor.main(["--out", str(tmp_path), "--rounds", "7"]) == 0
    assert seen["args"].rounds == 7
    written = json.loads((tmp_path / "int8-floor.json").read_text())
    assert written["schema_version"] == 4 and list(written)[0] == "schema_version"
    assert read_report(written) == report
    md = (tmp_path / "int8-floor.md").read_text()
    assert md == (DOCS / "int8-floor.md").read_text()  # the committed Markdown of the same numbers
    assert md in capsys.readouterr().out
