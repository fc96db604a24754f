"""benchmarks/optimize/profiles.py: where a call's time goes, for the selection report's missed targets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.optimize import profiles, selection

DIMS = {"input_ids": ("batch", "sequence"), "attention_mask": ("batch", "sequence")}


def _run(ts: int) -> list[dict]:
    """One model_run of a fake ONNX Runtime trace: two MatMul nodes of 10 µs and an Add of 4 µs."""
    return [{"cat": "Session", "name": "model_run", "ts": ts, "dur": 30},
            {"cat": "Node", "name": "a_kernel_time", "ts": ts + 1, "dur": 10, "args": {"op_name": "MatMul"}},
            {"cat": "Node", "name": "a_fence_before", "ts": ts + 1, "dur": 99, "args": {"op_name": "MatMul"}},
            {"cat": "Node", "name": "b_kernel_time", "ts": ts + 12, "dur": 10, "args": {"op_name": "MatMul"}},
            {"cat": "Node", "name": "c_kernel_time", "ts": ts + 23, "dur": 4 + ts // 100, "args": {"op_name": "Add"}}]


def test_an_onnx_runtime_trace_counts_the_timed_runs_only_and_kernels_only():
    events = _run(0) + _run(100) + _run(200)  # the first is the warm-up; its Add took 4, the timed ones 5 and 6
    spent = profiles.node_times(events, warm=1, calls=2)
    assert spent == {"MatMul": 20.0, "Add": 5.5}


def test_an_onnx_model_is_profiled_at_the_asked_shape(tiny_artifacts):
    m = profiles.artifact_model(tiny_artifacts["text-classification", "onnxruntime"])
    p, call = profiles.profile(m, DIMS, 2, 12, calls=4, warm=1)
    assert (p["shape"], p["ran_at"], p["tool"]) == ("2x12", "2x12", "ONNX Runtime profiler")
    assert p["node_us"] > 0 and 0 < p["gemm_share"] <= 1
    assert sum(o["us"] for o in p["ops"]) == pytest.approx(p["node_us"], rel=0.01)
    assert any("MatMul" in o["op"] or "Attention" in o["op"] for o in p["ops"])
    assert profiles.side_by_side([call], rounds=1, n=2, settle_s=0)[0] > 0


def test_a_bucketed_openvino_ir_is_profiled_on_its_bucket_model(tiny_openvino):
    path = tiny_openvino("text-classification", "fp32")
    m = profiles.Model("openvino", Path(path) / "model.xml", "f32", (16, 32))
    p, call = profiles.profile(m, DIMS, 1, 20, calls=3, warm=1)
    assert p["ran_at"] == "1x32" and p["tool"] == "OpenVINO PERF_COUNT (f32)"
    assert p["node_us"] > 0 and any(profiles.GEMM.search(o["op"]) for o in p["ops"])
    dyn, _ = profiles.profile(profiles.Model("openvino", m.file, "f32"), DIMS, 1, 20, calls=3, warm=1)
    assert dyn["ran_at"] == "1x20"


def _sel(ratios: dict[str, float], passing: dict[str, float] | None = None) -> dict:
    best = {w: {"id": f"peer-{w}", "p50_ms": 1.0, "ratio": r} for w, r in ratios.items()}
    fair = {w: {"id": f"fair-{w}", "p50_ms": 1.0, "ratio": r} for w, r in (passing or {}).items()}
    return {"winner": "ours", "best_peer": best, "best_passing_peer": fair, "vs_baseline": {"1x128": 5.0}}


def test_only_workloads_with_a_missed_target_against_the_peers_are_profiled():
    # tweets-bs1 misses the 1.2x lead; 8x128 is over 1x, 1x128 over 1.2x: nothing else missed
    sel = _sel({"tweets-bs1": 1.1, "1x128": 1.3, "8x128": 1.05})
    assert profiles.plan(sel, selection.targets(sel, [], "tweets-bs1")) == {"tweets-bs1": ["ours", "peer-tweets-bs1"]}
    # 8x128 slower than a peer: the 'as fast as every peer' target names it
    sel = _sel({"tweets-bs1": 1.25, "1x128": 1.3, "8x128": 0.9})
    assert profiles.plan(sel, selection.targets(sel, [], "tweets-bs1")) == {"8x128": ["ours", "peer-8x128"]}
    sel = _sel({"tweets-bs1": 1.25, "1x128": 1.3, "8x128": 1.1})
    assert profiles.plan(sel, selection.targets(sel, [], "tweets-bs1")) == {}
    # a faster peer fails parity; against the passing ones the lead on 1x128 is missed: both peers profiled
    sel = _sel({"tweets-bs1": 1.25, "1x128": 1.1, "8x128": 1.1}, {"tweets-bs1": 1.3, "1x128": 1.15, "8x128": 1.2})
    assert profiles.plan(sel, selection.targets(sel, [], "tweets-bs1")) == {
        "1x128": ["ours", "peer-1x128", "fair-1x128"]}


def test_the_report_shows_the_profiles_and_why_one_was_not_taken():
    from benchmarks.optimize.report import to_markdown

    d = json.loads((Path(__file__).parents[1] / "docs" / "optimize" / "avx512.json").read_text())
    before = to_markdown(d)
    assert "Where the time goes" not in before
    ours = {"id": d["winner"], "shape": "1x31", "ran_at": "1x32", "tool": "OpenVINO PERF_COUNT (f32)", "calls": 50,
            "node_us": 900.0, "profiled_wall_us": 1000.0, "wall_us": 1100.0, "gemm_share": 0.8,
            "ops": [{"op": "FullyConnected (brgemm_avx512_I8)", "us": 720.0, "share": 0.8},
                    {"op": "other", "us": 180.0, "share": 0.2}]}
    peer = {**ours, "id": "peer-optimum-ortq", "ran_at": "1x31", "tool": "ONNX Runtime profiler", "wall_us": 2200.0,
            "gemm_share": 0.5}
    reading = profiles.summary_line("tweets-bs1", [ours, peer], 0.98)
    assert "2.00x the winner's" in reading and "at most 1.25x faster" in reading and "0.98x" in reading
    d["profiles"] = [{"workload": "tweets-bs1", "shape": "1x31", "reading": reading,
                      "targets": [ours, peer, {"id": "torch-compile-fp32", "error": "no profiler"}]}]
    md = to_markdown(d)
    section = md[md.index("## Where the time goes"):md.index("## Every target")]
    assert reading in section
    assert f"| {d['winner']} | 1100 |" in section and "| peer-optimum-ortq | 2200 |" in section
    assert "| torch-compile-fp32 |" in section and "not profiled: no profiler" in section
    assert md.replace(md[md.index("\n## Where the time goes"):md.index("\n## Every target")], "") == before
