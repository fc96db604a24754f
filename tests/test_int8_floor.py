"""benchmarks.int8_floor: the FLOP count behind the floor and the report's arithmetic."""
from __future__ import annotations

import pytest

from benchmarks.int8_floor import model_flops, render

BASE = {"dim": 768, "hidden_dim": 3072, "n_layers": 6}


def test_base_model_flops_match_the_published_figure():
    # DistilBERT-base at 1x128: about 11.2 GFLOP (the figure); linear in the batch
    assert model_flops(BASE, 1, 128) / 1e9 == pytest.approx(11.17, abs=0.01)
    assert model_flops(BASE, 8, 128) == pytest.approx(8 * model_flops(BASE, 1, 128))


def _row(name, kind, best_ms, floor_ms, gflop, peak):
    return {"name": name, "kind": kind, "what": "", "best_ms": best_ms, "median_ms": best_ms, "pct_of_floor":
            100 * floor_ms / best_ms, "executed_gflop": gflop, "pct_of_peak_executed": 100 * gflop / best_ms / peak * 1e3,
            "vs_eager": 1.0, "vs_plain_nncf": 1.0}


def test_report_shows_floor_share_and_the_rate_on_executed_flops():
    peak, floor_ms = 1773.0, 11.17 / 1773.0 * 1e3
    report = {"model": "base-random", "task": "text-classification", "threads": 2, "timer": "t", "rounds": 1,
              "iters": 1, "cpu": {"model": "cpu", "logical_cpus": 2, "flags": {"avx512_vnni": True}},
              "shapes": [{"shape": "1x128", "gflop": 11.17, "peak_gops": peak, "peak_gops_1_thread": 929.0,
                          "peak_gops_by_shape": {"128x768x768": peak}, "floor_ms": floor_ms,
                          "fastest_project": "cls",
                          "rows": [_row("cls", "project", 7.80, floor_ms, 9.63, peak),
                                   _row("dense", "project", 8.78, floor_ms, 11.17, peak)]}]}
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
    md = render({"model": "m", "task": "t", "threads": 1, "timer": "t", "rounds": 1, "iters": 1, "cpu": cpu,
                 "shapes": []})
    assert f"CPU {cpu['model']} " in md and f"ISA: {', '.join(hardware.isa(cpu)) or 'none of note'})" in md


@pytest.mark.openvino
def test_gemm_roles_count_flops_from_the_compiled_shapes():
    """Each FullyConnected node's FLOPs come from its compiled shapes (2 x rows x K x N), grouped by role."""
    import openvino as ov
    import numpy as np
    import openvino.opset13 as ops

    from benchmarks.int8_floor import gemm_roles

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
    assert set(by) == {"lin1", "lin2"} and by["lin1"]["count"] == by["lin2"]["count"] == 1
    assert by["lin1"]["gflop"] * 1e9 == pytest.approx(2 * 48 * 32 * 64, rel=1e-9)  # rows = 3 x 16
    assert by["lin2"]["gflop"] * 1e9 == pytest.approx(2 * 48 * 64 * 8, rel=1e-9)
