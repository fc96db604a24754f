"""Service load benchmark (benchmarks/serve_bench): locust CSV and /metrics parsing, step figures from raw samples,
the target judgement (hand-made inputs, known answers; no timing assertions), and the quick benchmark end to end on
the tiny model (what `make bench-serve QUICK=1 MODEL=tiny` runs)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.serve_bench.config import ServeBenchConfig
from benchmarks.serve_bench.render import to_markdown
from benchmarks.serve_bench.report import (BATCHING, NO_BATCHING, ReportError, ServeBenchReport, judge, load_report,
                                           paired_stats)
from benchmarks.serve_bench.config import ServeBenchError
from benchmarks.serve_bench.parsing import parse_locust_csv, parse_prometheus, server_delta, summarize_step
from runtimes.errors import ConfigError
from runtimes.hardware import cpu_info, isa

REPO = Path(__file__).resolve().parents[1]
SERVE_BENCH = [sys.executable, "-m", "distilbert_deploy.cli", "serve-bench"]  # the CLI in a subprocess
CONCURRENCY = (1, 4, 16, 64)

# ----------------------------------------------------------------------------------------------- locust CSV

LOCUST_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,\
Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,predict,1282,3,6,6.128,2.83,17.75,48.5,128.25,0.3,6,7,7,7,8,9,10,11,13,18,18
POST,warmup,273,0,7,7.23,3.09,33.08,48.47,27.31,0.0,7,8,8,9,10,10,12,14,33,33,33
,Aggregated,1555,3,6,6.32,2.83,33.08,48.5,155.57,0.3,6,7,7,8,8,9,10,11,19,33,33
"""


def test_parse_locust_csv_reads_the_named_row(tmp_path):
    p = tmp_path / "stats.csv"
    p.write_text(LOCUST_CSV)
    row = parse_locust_csv(p)
    assert row["requests"] == 1282 and row["failures"] == 3
    assert (row["p50_ms"], row["p90_ms"], row["p99_ms"]) == (6, 8, 11)
    assert row["mean_ms"] == pytest.approx(6.128) and row["max_ms"] == pytest.approx(17.75)
    assert row["rps_since_start"] == pytest.approx(128.25)
    warm = parse_locust_csv(p, "warmup")
    assert warm["requests"] == 273 and warm["p99_ms"] == 14
    assert parse_locust_csv(p, "nothing") == {}


def test_parse_locust_csv_with_no_requests_has_no_percentiles(tmp_path):
    p = tmp_path / "stats.csv"
    header = LOCUST_CSV.splitlines()[0]
    p.write_text(header + "\n,Aggregated,0,0,0,0,0,0,0,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n")
    assert parse_locust_csv(p) == {}
    agg = parse_locust_csv(p, "Aggregated")
    assert agg["requests"] == 0 and agg["p50_ms"] is None


def test_parse_locust_csv_refuses_other_files(tmp_path):
    with pytest.raises(ServeBenchError, match="no stats file"):
        parse_locust_csv(tmp_path / "missing.csv")
    p = tmp_path / "other.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ServeBenchError, match="not a locust stats CSV"):
        parse_locust_csv(p)


# ----------------------------------------------------------------------------------------------- /metrics

def _metrics(batches, rows, infer_s, wait_s, tokens, padding, requests, req_s, queue_full=0) -> str:
    m = 'model="bench"'
    return f"""# HELP distilbert_deploy_batch_size Rows per batch
# TYPE distilbert_deploy_batch_size histogram
distilbert_deploy_batch_size_bucket{{{m},le="1.0"}} 3.0
distilbert_deploy_batch_size_count{{{m}}} {batches}
distilbert_deploy_batch_size_sum{{{m}}} {rows}
distilbert_deploy_inference_seconds_count{{{m}}} {batches}
distilbert_deploy_inference_seconds_sum{{{m}}} {infer_s}
distilbert_deploy_queue_wait_seconds_count{{{m}}} {rows}
distilbert_deploy_queue_wait_seconds_sum{{{m}}} {wait_s}
distilbert_deploy_batch_tokens_count{{{m}}} {batches}
distilbert_deploy_batch_tokens_sum{{{m}}} {tokens}
distilbert_deploy_padding_tokens_count{{{m}}} {batches}
distilbert_deploy_padding_tokens_sum{{{m}}} {padding}
distilbert_deploy_request_seconds_count{{endpoint="predict",{m}}} {requests}
distilbert_deploy_request_seconds_sum{{endpoint="predict",{m}}} {req_s}
distilbert_deploy_request_seconds_count{{endpoint="infer",{m}}} 1000
distilbert_deploy_request_seconds_sum{{endpoint="infer",{m}}} 99.0
distilbert_deploy_errors_total{{kind="queue_full",{m}}} {queue_full}
distilbert_deploy_inflight_requests 0.0
"""


def test_server_delta_from_two_scrapes():
    before = parse_prometheus(_metrics(10, 10, 0.05, 0.001, 300, 0, 10, 0.06))
    after = parse_prometheus(_metrics(30, 90, 0.85, 4.001, 3300, 600, 90, 8.06, queue_full=2))
    d = server_delta(before, after)
    assert d["batches"] == 20 and d["rows"] == 80 and d["mean_batch_size"] == pytest.approx(4.0)
    assert d["mean_inference_ms"] == pytest.approx(40.0)  # 0.8 s over 20 batches
    assert d["mean_queue_wait_ms"] == pytest.approx(50.0)  # 4 s over 80 rows
    assert d["padding_fraction"] == pytest.approx(0.2)  # 600 of 3000 tokens
    assert d["requests"] == 80 and d["mean_request_ms"] == pytest.approx(100.0)  # the predict endpoint only
    assert d["errors"] == {"queue_full": 2}


def test_parse_prometheus_keeps_sample_names_labels_and_values():
    text = ('# HELP x_total Errors\n# TYPE x_total counter\nx_total{kind="a \\"b\\"",model="m"} 3.0\n'
            '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 0.5\nplain 1e3\n')
    assert parse_prometheus(text) == [("x_total", {"kind": 'a "b"', "model": "m"}, 3.0),
                                      ("h_bucket", {"le": "+Inf"}, 2.0), ("h_count", {}, 2.0), ("h_sum", {}, 0.5),
                                      ("plain", {}, 1000.0)]
    with pytest.raises(ServeBenchError, match="not Prometheus text"):
        parse_prometheus("x_total{kind=} nope\n")


def test_server_delta_with_nothing_done_has_no_means():
    same = parse_prometheus(_metrics(5, 5, 0.1, 0.1, 50, 0, 5, 0.1))
    d = server_delta(same, same)
    assert d["batches"] == 0 and d["mean_batch_size"] is None and d["padding_fraction"] is None
    assert d["errors"] == {}


# ----------------------------------------------------------------------------------------------- step figures

def test_summarize_step_from_raw_samples():
    # warm-up ends at t=100 s. Warm-up: 3 requests (one failed); measured: 100 requests of 1..100 ms, each started
    # at 100 + k/10 s, one of them failed. Throughput counts successful answers that ended inside the window
    # [100, last end]; the last measured request starts at 109.9 s and takes 100 ms: the window is 10.0 s.
    warm = [[99.0, 500.0, 1, 0], [99.5, 600.0, 0, 0], [99.99, 5.0, 1, 0]]  # ends 99.5, 100.1 (failed), 99.995
    measured = [[100.0 + k / 10, float(k + 1), 0 if k == 0 else 1, 1] for k in range(100)]
    doc = {"t0": 97.0, "warm_end": 100.0, "stop": 115.0, "budget_exhausted": False, "samples": warm + measured}
    s = summarize_step(doc, 8)
    assert s["concurrency"] == 8 and s["requests"] == 100 and s["warmup_requests"] == 3
    assert s["errors"] == 2  # the whole step: one in the warm-up, one measured
    assert s["window_s"] == pytest.approx(10.0)
    assert s["throughput_rps"] == pytest.approx(99 / 10.0)  # 99 successful measured answers end in the window
    # numpy 'linear' percentiles of 1..100 ms: 1 + 99 q
    assert (s["p50_ms"], s["p90_ms"], s["p99_ms"]) == pytest.approx((50.5, 90.1, 99.01))
    assert s["mean_ms"] == pytest.approx(50.5) and s["max_ms"] == 100.0
    assert len(s["latencies_ms"]) == 100


def test_summarize_step_without_measured_requests_is_an_error():
    with pytest.raises(ServeBenchError, match="no measured request"):
        summarize_step({"warm_end": 10.0, "samples": [[9.0, 5.0, 1, 0]]}, 4)


# ----------------------------------------------------------------------------------------------- targets

def _step(c, rps, p50=10.0, errors=0):
    return {"concurrency": c, "throughput_rps": rps, "p50_ms": p50, "errors": errors, "requests": 100,
            "warmup_requests": 10}


def _ceiling(best, p50, one_by_one=100.0, sorted_=150.0):
    return {"throughput_texts_per_s": best, "single_p50_ms": p50,
            "modes_texts_per_s": {"chunks": 90.0, "one-by-one": one_by_one, "sorted": sorted_}}


def _runs(on: dict, off: dict) -> list[dict]:
    return [{"label": BATCHING, "steps": [_step(c, *v) for c, v in on.items()]},
            {"label": NO_BATCHING, "steps": [_step(c, *v) for c, v in off.items()]}]


def _by_id(targets):
    return {t.id: t for t in targets}


def _paired(service_p50, inproc_p50, pairs=100, errors=0, median_diff=None):
    return {"configuration": BATCHING, "pairs": pairs, "requests": pairs + 20 + errors, "errors": errors,
            "service_p50_ms": service_p50, "inprocess_p50_ms": inproc_p50, "p50_diff_ms": service_p50 - inproc_p50,
            "median_diff_ms": service_p50 - inproc_p50 if median_diff is None else median_diff}


# ----------------------------------------------------------------------------------------------- paired c=1 latency

def test_paired_stats_by_hand():
    # 5 pairs (in-process, service): (5, 6) (6, 7.5) (7, 10) (8, 9.5) (9, 14)
    # in-process sorted 5 6 7 8 9: p50 = 7; p90 at rank 0.9 * 4 = 3.6: 8 + 0.6 * (9 - 8) = 8.6
    # service sorted 6 7.5 9.5 10 14: p50 = 9.5; p90: 10 + 0.6 * (14 - 10) = 12.4
    # per-pair differences 1 1.5 3 1.5 5 -> sorted 1 1.5 1.5 3 5: median 1.5; p50 difference 9.5 - 7 = 2.5
    st = paired_stats([5, 6, 7, 8, 9], [6, 7.5, 10, 9.5, 14])
    assert st["pairs"] == 5
    assert (st["inprocess_p50_ms"], st["inprocess_p90_ms"]) == pytest.approx((7.0, 8.6))
    assert (st["service_p50_ms"], st["service_p90_ms"]) == pytest.approx((9.5, 12.4))
    assert st["median_diff_ms"] == pytest.approx(1.5) and st["p50_diff_ms"] == pytest.approx(2.5)
    # 4 pairs: (4, 5) (6, 9) (5, 6) (7, 8). In-process sorted 4 5 6 7: p50 5.5, p90 at rank 2.7: 6.7;
    # service sorted 5 6 8 9: p50 7, p90 8.7; differences 1 3 1 1: median 1; p50 difference 1.5
    st = paired_stats([4, 6, 5, 7], [5, 9, 6, 8])
    assert st["pairs"] == 4
    assert (st["inprocess_p50_ms"], st["inprocess_p90_ms"]) == pytest.approx((5.5, 6.7))
    assert (st["service_p50_ms"], st["service_p90_ms"]) == pytest.approx((7.0, 8.7))
    assert st["median_diff_ms"] == pytest.approx(1.0) and st["p50_diff_ms"] == pytest.approx(1.5)
    empty = paired_stats([], [])
    assert empty["pairs"] == 0 and empty["p50_diff_ms"] is None and empty["service_p50_ms"] is None
    with pytest.raises(ValueError, match="same length"):
        paired_stats([1.0, 2.0], [1.0])


def test_judge_c1_latency_on_the_paired_figures():
    # the locust c=1 step's p50 (50 ms) is not what the target is judged on
    runs = _runs({1: (100.0, 50.0)}, {1: (100.0,)})
    ceilings = [_ceiling(200.0, 1.0)]
    lat = lambda paired: _by_id(judge(runs, ceilings, max_queue=256, paired=paired))["latency-c1"]
    at = lat(_paired(8.47, 6.47, median_diff=1.75))  # exactly + 2 ms: met
    assert at.met is True
    assert "side by side, interleaved" in at.measured and "100 pairs" in at.measured
    assert "service p50 8.47 ms, in-process p50 6.47 ms: +2.00 ms" in at.measured
    assert "median per-pair difference +1.75 ms" in at.measured
    assert lat(_paired(6.0, 6.47)).met is True  # faster than in-process (noise): met
    over = lat(_paired(8.48, 6.47))  # + 2.01 ms
    assert over.met is False and "+2.01 ms" in over.measured
    assert lat(None).met is None and lat(_paired(1.0, 1.0, pairs=0)).met is None
    # failed paired requests count against the zero-error target
    t = _by_id(judge(runs, ceilings, max_queue=256, paired=_paired(7.0, 6.0, errors=2)))
    assert t["no-errors"].met is False and "paired c=1 measurement: 2" in t["no-errors"].measured
    assert t["latency-c1"].met is True and "2 failed requests dropped" in t["latency-c1"].measured
    t = _by_id(judge(runs, ceilings, max_queue=256, paired=_paired(7.0, 6.0)))
    assert t["no-errors"].met is True and "paired c=1 measurement (120 requests)" in t["no-errors"].measured


def test_judge_c1_latency_over_grpc_is_its_own_target():
    """The gRPC run's paired figures are judged as latency-c1-grpc beside REST's, and their failed requests count
    against the zero-error target; without a gRPC run the target list is unchanged."""
    runs = _runs({1: (100.0, 7.0), 16: (140.0,)}, {1: (100.0,), 16: (70.0,)})
    ceilings = [_ceiling(200.0, 5.0)]
    t = _by_id(judge(runs, ceilings, max_queue=256, paired=_paired(7.0, 6.0), paired_grpc=_paired(8.6, 6.5, errors=1)))
    assert list(t) == ["batching-speedup", "latency-c1", "latency-c1-grpc", "ceiling-c64", "no-errors"]
    assert t["latency-c1"].met is True and t["latency-c1-grpc"].met is False  # +1.00 ms; +2.10 ms
    assert "(OIP v2 gRPC)" in t["latency-c1-grpc"].text and "+2.10 ms" in t["latency-c1-grpc"].measured
    assert t["no-errors"].met is False and "paired c=1 measurement over gRPC: 1" in t["no-errors"].measured
    assert "latency-c1-grpc" not in _by_id(judge(runs, ceilings, max_queue=256, paired=_paired(7.0, 6.0)))


def test_judge_all_met_with_the_boundaries_counted_as_met():
    # batching 2.0x exactly at c=16 and 3x at c=64; paired c=1 p50 exactly in-process + 2 ms; c=64 at exactly 85%
    runs = _runs({1: (100.0, 7.0), 4: (150.0,), 16: (140.0,), 64: (170.0,)},
                 {1: (100.0,), 4: (90.0,), 16: (70.0,), 64: (50.0,)})
    t = _by_id(judge(runs, [_ceiling(200.0, 5.0), _ceiling(180.0, 5.5)], max_queue=256, paired=_paired(7.0, 5.0)))
    assert list(t) == ["batching-speedup", "latency-c1", "ceiling-c64", "no-errors"]
    assert [x.met for x in t.values()] == [True, True, True, True]
    assert "c=16: 140.0 / 70.0 req/s = 2.00x" in t["batching-speedup"].measured
    assert "1.50x one text per call" in t["batching-speedup"].measured  # the in-process batching gain, 150/100
    assert "+2.00 ms" in t["latency-c1"].measured  # the paired 7.0 against the paired 5.0
    assert "85%" in t["ceiling-c64"].measured  # 170 of the higher ceiling, 200


def test_judge_not_met():
    # c=64 batching only 1.5x (c=16 is 2.5x: every step >= 16 must pass); paired p50 2.01 ms over; c=64 at 75% of
    # the ceiling; one error in the no-batching run
    runs = _runs({1: (100.0, 7.01), 16: (139.0,), 64: (150.0,)},
                 {1: (100.0,), 16: (55.6,), 64: (100.0, 10.0, 1)})
    t = _by_id(judge(runs, [_ceiling(200.0, 5.0)], max_queue=256, paired=_paired(7.01, 5.0)))
    assert [x.met for x in t.values()] == [False, False, False, False]
    assert "c=64: 150.0 / 100.0 req/s = 1.50x" in t["batching-speedup"].measured
    assert "no-batching c=64: 1" in t["no-errors"].measured


def test_judge_without_the_steps_it_needs_says_not_measured():
    runs = _runs({4: (100.0,)}, {4: (50.0,)})
    t = _by_id(judge(runs, [], max_queue=256))
    assert t["batching-speedup"].met is None and t["latency-c1"].met is None and t["ceiling-c64"].met is None
    assert t["no-errors"].met is True
    # steps above the queue limit are not held to zero errors
    t = _by_id(judge(_runs({64: (1.0, 1.0, 5)}, {}), [], max_queue=32))
    assert t["no-errors"].met is None


# ----------------------------------------------------------------------------------------------- config, report

def test_config_refuses_a_queue_below_the_concurrency_and_batching_off_as_on():
    with pytest.raises(ConfigError, match="below the largest concurrency"):
        ServeBenchConfig(artifact=Path("a"), max_queue=32)
    with pytest.raises(ConfigError, match=">= 2"):
        ServeBenchConfig(artifact=Path("a"), batch_size=1)
    with pytest.raises(ConfigError, match="positive integers"):
        ServeBenchConfig(artifact=Path("a"), concurrency=(0, 4))
    with pytest.raises(ConfigError, match="paired_max_pairs"):
        ServeBenchConfig(artifact=Path("a"), paired_max_pairs=0)
    with pytest.raises(ConfigError, match="paired_max_s"):
        ServeBenchConfig(artifact=Path("a"), paired_max_s=0)


def test_report_of_another_schema_is_refused(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(ReportError, match="schema version 999"):
        load_report(p)
    p.write_text(json.dumps({"schema_version": 2}))  # before peer failures were rows of the report
    with pytest.raises(ReportError, match="schema version 2 is not supported"):
        load_report(p)
    p.write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        load_report(p)
    with pytest.raises(ReportError, match="does not exist"):
        load_report(tmp_path / "none.json")


# ----------------------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    for module in ("locust", "fastapi", "uvicorn", "prometheus_client"):  # locust is never imported here: it
        if importlib.util.find_spec(module) is None:                      # monkey-patches threads (gevent)
            pytest.skip(f"needs module '{module}' (pip install '.[serve,dev]')")
    from exporters.onnx_export import ExportConfig, export

    path = tmp_path_factory.mktemp("serve-bench") / "tiny-text-classification"
    export(ExportConfig(model="tiny", task="text-classification", out=path))
    return path


@pytest.mark.server
def test_quick_serve_bench_end_to_end(tiny_classifier, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([*SERVE_BENCH, "run", str(tiny_classifier), "--quick",
                        "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    paths = {k: out / f"serve-bench.{k}" for k in ("json", "md", "png")}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    d = json.loads(paths["json"].read_text())
    rep = ServeBenchReport.from_dict(d)  # typed and versioned
    assert json.loads(json.dumps(rep.to_dict())) == d
    assert [r["label"] for r in d["runs"]] == [BATCHING, NO_BATCHING]
    assert [r["max_batch_size"] for r in d["runs"]] == [16, 1]
    for run in d["runs"]:
        assert run["exit_code"] == 0, f"{run['label']}: the server did not exit 0 after SIGTERM"
        assert [s["concurrency"] for s in run["steps"]] == list(CONCURRENCY)
        for s in run["steps"]:
            where = f"{run['label']} c={s['concurrency']}"
            assert s["errors"] == 0, where
            assert s["requests"] > 0 and s["throughput_rps"] > 0, where
            assert s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"], where
            assert len(s["latencies_ms"]) == s["requests"], where
            assert s["locust"]["requests"] == s["requests"] and s["locust"]["failures"] == 0, where
            assert s["server"]["requests"] >= s["requests"] + s["warmup_requests"], where  # the server saw them all
            if run["label"] == NO_BATCHING:
                assert s["server"]["mean_batch_size"] == 1.0, where
    assert [c["when"] for c in d["ceilings"]] == ["before", "after"]
    for c in d["ceilings"]:
        assert c["throughput_texts_per_s"] > 0 and c["single_p50_ms"] > 0
        assert set(c["modes_texts_per_s"]) == {"chunks", "one-by-one", "sorted"}
    p = d["paired"]  # the c=1 latency, in-process and HTTP interleaved against the batching server
    assert p["configuration"] == BATCHING and p["pairs"] > 0 and p["errors"] == 0 and p["connections"] == 1
    assert len(p["inprocess_ms"]) == len(p["service_ms"]) == len(p["service_first"]) == p["pairs"]
    assert p["requests"] == p["warmup_pairs"] + p["pairs"] and p["stopped_by"] in ("count", "time")
    assert p["pairs"] <= p["max_pairs"] and p["service_p50_ms"] > 0 and p["inprocess_p50_ms"] > 0
    assert p["p50_diff_ms"] == pytest.approx(p["service_p50_ms"] - p["inprocess_p50_ms"])
    if p["pairs"] > 1:  # the order is swapped every pair
        assert {p["service_first"][0], p["service_first"][1]} == {True, False}
    targets = {t["id"]: t for t in d["targets"]}
    assert set(targets) == {"batching-speedup", "latency-c1", "ceiling-c64", "no-errors"}
    assert targets["no-errors"]["met"] is True
    assert "side by side, interleaved" in targets["latency-c1"]["measured"]
    assert all(t["met"] in (True, False) for t in d["targets"])  # every target was measured
    md = paths["md"].read_text()
    assert md == to_markdown(d)
    assert "## Paired latency at concurrency 1" in md
    cpu = cpu_info()  # the one CPU reader: model and ISA flags recorded, and shown by name
    assert (d["environment"]["cpu"]["model"], d["environment"]["cpu"]["flags"]) == (cpu["model"], cpu["flags"])
    machine = next(x for x in md.splitlines() if x.startswith("- **Machine**"))
    assert cpu["model"] in machine and all(name in machine for name in isa(cpu))
    # re-rendering the JSON elsewhere reproduces the same Markdown (a pure function of the JSON)
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(paths["json"], again / "serve-bench.json")
    r = subprocess.run([*SERVE_BENCH, "render", str(again / "serve-bench.json")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (again / "serve-bench.md").read_text() == md
    assert (again / "serve-bench.png").stat().st_size > 0


@pytest.mark.ray
@pytest.mark.triton
@pytest.mark.server
@pytest.mark.slow
def test_quick_serve_bench_with_peers_has_the_peer_table(tiny_classifier, tmp_path):
    """Ray Serve (1 replica; the run re-executes itself in a private network namespace) and the bundled Triton on
    the python-runtime repository, under the same load as our service, in one run."""
    out = tmp_path / "out"
    r = subprocess.run([*SERVE_BENCH, "run", str(tiny_classifier), "--quick",
                        "--concurrency", "1,4", "--peer", "ray-1,triton", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads((out / "serve-bench.json").read_text())
    runs = {run["label"]: run for run in d["runs"]}
    assert list(runs) == [BATCHING, NO_BATCHING, "ray-1", "triton"]
    for label in ("ray-1", "triton"):
        run = runs[label]
        assert run["ready_s"] > 0 and run["rss_mb"] > 50, label
        for s in run["steps"]:
            assert s["errors"] == 0 and s["requests"] > 0 and s["locust"]["failures"] == 0, (label, s["concurrency"])
            assert s["server"] == {} or set(s["server"]) <= {"server_cpu_cores", "load_generator_cpu_cores"}
    assert runs["ray-1"]["engine"] == "Ray Serve, 1 replica(s)" and "--engine ray --replicas 1" in runs["ray-1"]["command"]
    assert runs["triton"]["engine"].startswith("Triton") and "tritonserver" in runs["triton"]["command"]
    targets = {t["id"]: t for t in d["targets"]}
    assert {"peers", "peer-ray-1", "peer-triton"} <= set(targets)
    assert all(targets[k]["met"] in (True, False) for k in ("peer-ray-1", "peer-triton"))
    assert targets["peers"]["met"] is None  # no c=16 / c=64 step in this run
    assert all(run["listening"] for run in runs.values())
    md = (out / "serve-bench.md").read_text()
    assert "## Peers under the same load" in md and "| Ray Serve, 1 replica(s) (ray-1) |" in md


def test_cli_refuses_a_non_classification_artifact_with_a_clear_error(tmp_path):
    from exporters.onnx_export import ExportConfig, export

    path = tmp_path / "fill-mask"
    export(ExportConfig(model="tiny", task="fill-mask", out=path))
    r = subprocess.run([*SERVE_BENCH, "run", str(path), "--quick", "--out",
                        str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "fill-mask artifact" in r.stderr and "text-classification" in r.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------- peers (pure)

def _peer(label, steps: dict, engine=None):
    return {"label": label, "engine": engine or label,
            "steps": [{"concurrency": c, "throughput_rps": rps, "p99_ms": p99} for c, (rps, p99) in steps.items()]}


def _ours(steps: dict):
    return {"label": BATCHING, "steps": [{"concurrency": c, "throughput_rps": rps, "p99_ms": p99}
                                         for c, (rps, p99) in steps.items()]}


def test_peers_target_is_against_the_best_peer_at_c16_and_c64():
    from benchmarks.serve_bench.report import peer_targets

    ours = _ours({16: (150.0, 90.0), 64: (300.0, 200.0)})
    # at c=16 the best peer is b (100 req/s): 1.5x exactly, our p99 equal to its: met; at c=64 a (200): 1.5x, lower p99
    runs = [ours, _peer("a", {16: (90.0, 80.0), 64: (200.0, 250.0)}), _peer("b", {16: (100.0, 90.0), 64: (50.0, 9.0)})]
    t = _by_id(peer_targets(runs))
    assert list(t) == ["peers", "peer-a", "peer-b"]
    assert t["peers"].met is True
    assert ("c=16: ours 150.0 req/s (p99 90.0 ms) vs the best peer, b, 100.0 (p99 90.0 ms) = 1.50x"
            in t["peers"].measured)
    assert "c=64:" in t["peers"].measured and "best peer, a, 200.0" in t["peers"].measured
    # 1.5x but at a higher p99 than the best peer's: not met
    runs[2] = _peer("b", {16: (100.0, 89.0), 64: (50.0, 9.0)})
    t = _by_id(peer_targets(runs))
    assert t["peers"].met is False and "at a higher p99" in t["peers"].measured
    # under 1.5x: not met
    t = _by_id(peer_targets([_ours({16: (149.0, 1.0), 64: (300.0, 1.0)}), *runs[1:]]))
    assert t["peers"].met is False
    assert peer_targets([ours]) == []  # no peer asked for: no peer target


def test_a_failed_peer_is_a_row_and_leaves_the_peers_target_unjudged():
    from benchmarks.serve_bench.report import peer_targets

    runs = [_ours({16: (300.0, 9.0), 64: (400.0, 9.0)}), _peer("a", {16: (100.0, 90.0), 64: (100.0, 90.0)})]
    t = _by_id(peer_targets(runs, [{"label": "kserve", "error": "PeerError: no .venv-kserve\nmore"}]))
    assert t["peers"].met is None and "not measured: kserve" in t["peers"].measured
    assert t["peer-kserve"].met is None and "no .venv-kserve more" in t["peer-kserve"].measured
    assert t["peer-a"].met is True


def _report_dict(runs, failures=()):
    from benchmarks.serve_bench.report import SCHEMA_VERSION

    step = {"concurrency": 1, "requests": 10, "errors": 0, "warmup_requests": 1, "window_s": 1.0,
            "throughput_rps": 10.0, "mean_ms": 1.0, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0,
            "budget_exhausted": False, "locust": {}, "server": {}, "error_messages": [], "latencies_ms": [1.0]}
    return {"schema_version": SCHEMA_VERSION, "created": "now", "command": "c", "model": "tiny",
            "task": "text-classification", "artifact": "a", "backend": "onnxruntime", "precision": "fp32",
            "config": {"batch_size": 16}, "method": dict.fromkeys(("serve_command", "steps", "figures", "ceiling",
                                                                   "paired"), "m"),
            "load": {"tool": "locust", "version": "2", "user_class": "U", "endpoint": "/e", "texts": 1,
                     "text_source": "s", "mean_chars": 1.0}, "environment": {"cpu": {"flags": {}}},
            "ceilings": [], "targets": [], "paired": None, "paired_grpc": None, "notes": [],
            "runs": [{"label": label, "max_batch_size": 16, "command": "x", "ready_s": 1.0, "exit_code": 0,
                      "steps": [step], "engine": label, "rss_mb": 1.0, "served": "", "note": "how",
                      "listening": ["127.0.0.1:1"]} for label in runs],
            "failures": list(failures)}


def test_report_renders_peer_failures_as_rows_and_round_trips():
    d = _report_dict([BATCHING, "kserve"], [{"label": "infinity", "error": "PeerError: it broke\nline two | pipe"}])
    rep = ServeBenchReport.from_dict(d)
    assert rep.failures[0].label == "infinity" and rep.runs[1].listening == ("127.0.0.1:1",)
    assert json.loads(json.dumps(rep.to_dict())) == d
    md = to_markdown(d)
    row = next(x for x in md.splitlines() if x.startswith("| infinity |"))
    assert "**failed**: PeerError: it broke line two \\| pipe" in row  # one table row, pipes escaped
    assert "### Peer failure: infinity" in md and "line two | pipe" in md  # the whole error, in a block
    assert "- **kserve**: how; listened on 127.0.0.1:1" in md


def test_loopback_check_reads_proc_net(tmp_path):
    from benchmarks.serve_bench.peers import PeerError, _hex_addr, check_loopback, is_loopback, listening

    assert _hex_addr("0100007F") == "127.0.0.1" and _hex_addr("00000000") == "0.0.0.0"
    assert _hex_addr("0000000000000000FFFF00000100007F") == "::ffff:127.0.0.1"
    assert _hex_addr("00000000000000000000000001000000") == "::1"
    assert is_loopback("::ffff:127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert not is_loopback("::")
    # this process listening on 127.0.0.1: found, and loopback
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert ("127.0.0.1", port) in listening([os.getpid()])
        assert ("127.0.0.1", port) in check_loopback("me", [os.getpid()], private_network=False)
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        with pytest.raises(PeerError, match="listens beyond loopback: 0.0.0.0"):
            check_loopback("me", [os.getpid()], private_network=False)
        check_loopback("me", [os.getpid()], private_network=True)  # only `lo` exists there


def test_peer_launch_refusals(tmp_path, monkeypatch):
    from benchmarks.serve_bench import peers
    from benchmarks.serve_bench.peers import PeerError, launch

    cfg = ServeBenchConfig(artifact=tmp_path)
    with pytest.raises(PeerError, match="not measured on feature-extraction"):
        launch(cfg, "kserve", 16, tmp_path, 1, 2, "feature-extraction")
    monkeypatch.setattr("runtimes.procs.REPO", tmp_path)  # no venvs there
    for name in ("KSERVE", "INFINITY"):
        monkeypatch.delenv(f"DISTILBERT_DEPLOY_{name}_VENV", raising=False)
    with pytest.raises(PeerError, match=r"needs \.venv-kserve .*Fix: make venv-kserve"):
        launch(cfg, "kserve", 16, tmp_path, 1, 2, "text-classification")
    with pytest.raises(PeerError, match=r"needs \.venv-infinity .*make venv-infinity"):
        launch(cfg, "infinity", 16, tmp_path, 1, 2, "text-classification")
    with pytest.raises(ConfigError, match="unknown peer"):
        ServeBenchConfig(artifact=tmp_path, peers=("torchserve",))
    ours = launch(cfg, peers.OURS_GRPC, 16, tmp_path, 1, 2, "text-classification")  # ours, driven over gRPC
    assert ours.protocol == "oip-grpc-text" and ours.grpc_port == 2 and ours.argv[-2:] == ["--grpc-port", "2"]
    assert launch(cfg, None, 16, tmp_path, 1, 2, "feature-extraction").protocol == "openai-embed"


def test_onnx_source_walks_up_to_the_onnx_artifact(tiny_classifier, tmp_path):
    from benchmarks.serve_bench.peers import PeerError, onnx_source

    assert onnx_source(tiny_classifier) == tiny_classifier
    child = tmp_path / "ov"
    shutil.copytree(tiny_classifier, child)
    m = json.loads((child / "manifest.json").read_text())
    m["backend"], m["source"]["parent"] = "openvino", {"path": str(tiny_classifier)}
    (child / "manifest.json").write_text(json.dumps(m))
    assert onnx_source(child) == tiny_classifier
    m["source"]["parent"] = {"path": str(tmp_path / "gone")}
    (child / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PeerError, match="loads ONNX models only"):
        onnx_source(child)


def test_realsize_texts_have_exactly_the_token_counts(tiny_classifier):
    from benchmarks.serve_bench.realsize import texts_of_length
    from benchmarks.serve_bench.runner import heldout_texts
    from runtimes.tasks import load_tokenizer

    tok = load_tokenizer(tiny_classifier)
    pool = heldout_texts(200)
    for n in (16, 32, 64, 128):
        texts = texts_of_length(tok, n, 8, pool)
        assert len(texts) == 8 and len(set(texts)) == 8
        assert {len(tok(t)["input_ids"]) for t in texts} == {n}, n

