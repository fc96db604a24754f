"""Pure parsing of what a serve-bench run collects: locust's CSV and the per-request samples, the server's
Prometheus /metrics and their deltas over a step."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .config import MODEL_NAME, ServeBenchError

PERCENTILE_METHOD = "linear"  # numpy's default, as benchmarks/bench


def parse_locust_csv(path: str | os.PathLike, name: str = "predict") -> dict:
    """Locust's requests CSV (the `--csv` PREFIX_stats.csv format) row for request `name`: requests, failures, median/avg/min/max ms, rps and the
    p50/p90/p99 columns (whole ms as locust rounds them). {} when the file has no such row (no request was made)."""
    path = Path(path)
    if not path.is_file():
        raise ServeBenchError(f"locust wrote no stats file '{path}'. It failed before the test ran; its output is "
                              f"in the step's log")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"Name", "Request Count", "Failure Count", "50%", "90%", "99%"} <= set(rows[0]):
        raise ServeBenchError(f"'{path}' is not a locust stats CSV (columns {sorted(rows[0])}); expected Name, "
                              f"Request Count, Failure Count, 50%, 90%, 99%")
    row = next((r for r in rows if r["Name"] == name), None)
    if row is None:
        return {}

    def num(key, kind=float):
        v = row.get(key, "")
        return None if v in ("", "N/A", None) else kind(float(v))

    return {"requests": num("Request Count", int), "failures": num("Failure Count", int),
            "median_ms": num("Median Response Time"), "mean_ms": num("Average Response Time"),
            "min_ms": num("Min Response Time"), "max_ms": num("Max Response Time"),
            "rps_since_start": num("Requests/s"), "p50_ms": num("50%"), "p90_ms": num("90%"), "p99_ms": num("99%")}


def parse_prometheus(text: str) -> list[tuple[str, dict, float]]:
    """Prometheus text exposition -> (sample name, labels, value) for every sample, by prometheus_client's own
    parser (sample names as exposed: a histogram's `_bucket`/`_count`/`_sum`, a counter's `_total`)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return [(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text) for s in family.samples]
    except ValueError as e:
        raise ServeBenchError(f"the /metrics answer is not Prometheus text exposition ({e})") from None


def metric(samples: list[tuple[str, dict, float]], name: str, **labels) -> float:
    """The sum of every sample called `name` whose labels include `labels`."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


SERVER_SERIES = {  # figure -> (sum sample, count sample, extra labels)
    "batch": ("distilbert_deploy_batch_size_sum", "distilbert_deploy_batch_size_count", {}),
    "inference": ("distilbert_deploy_inference_seconds_sum", "distilbert_deploy_inference_seconds_count", {}),
    "wait": ("distilbert_deploy_queue_wait_seconds_sum", "distilbert_deploy_queue_wait_seconds_count", {}),
    "tokens": ("distilbert_deploy_batch_tokens_sum", "distilbert_deploy_batch_tokens_count", {}),
    "padding": ("distilbert_deploy_padding_tokens_sum", "distilbert_deploy_padding_tokens_count", {}),
    "request": ("distilbert_deploy_request_seconds_sum", "distilbert_deploy_request_seconds_count",
                {"endpoint": "predict"}),
}


def server_delta(before: list, after: list, model: str = MODEL_NAME) -> dict:
    """What the server did between two /metrics scrapes: batches, mean rows per batch, inference ms per batch,
    queue wait ms per row, padding share of the batch tokens, server time per request, errors by kind."""
    d = {}
    for key, (s, c, extra) in SERVER_SERIES.items():
        d[key] = (metric(after, s, model=model, **extra) - metric(before, s, model=model, **extra),
                  metric(after, c, model=model, **extra) - metric(before, c, model=model, **extra))
    per = lambda k, scale=1.0: d[k][0] / d[k][1] * scale if d[k][1] else None
    kinds = {lab.get("kind") for n, lab, _ in after if n == "distilbert_deploy_errors_total"}
    errors = {k: int(metric(after, "distilbert_deploy_errors_total", model=model, kind=k)
                     - metric(before, "distilbert_deploy_errors_total", model=model, kind=k)) for k in sorted(kinds)}
    return {"batches": int(d["batch"][1]), "rows": int(d["batch"][0]), "mean_batch_size": per("batch"),
            "mean_inference_ms": per("inference", 1e3), "mean_queue_wait_ms": per("wait", 1e3),
            "padding_fraction": d["padding"][0] / d["tokens"][0] if d["tokens"][0] else None,
            "mean_request_ms": per("request", 1e3), "requests": int(d["request"][1]),
            "errors": {k: v for k, v in errors.items() if v}}


def summarize_step(doc: dict, concurrency: int) -> dict:
    """The step's figures from the locustfile's raw samples ({warm_end, stop, samples: [[start epoch s, latency
    ms, ok, measured]]}): throughput = successful answers that completed inside the measured window (end of warm-up
    .. last answer) / its length; percentiles (numpy linear) over the requests started in the window; errors =
    failed requests of the whole step."""
    s = np.asarray(doc["samples"], dtype=np.float64).reshape(-1, 4)
    start, lat, ok, measured = s[:, 0], s[:, 1], s[:, 2] > 0, s[:, 3] > 0
    end = start + lat / 1e3
    warm_end = float(doc["warm_end"])
    window_end = float(end.max()) if end.size else warm_end
    window = window_end - warm_end
    done = ok & (end >= warm_end) & (end <= window_end)
    m = lat[measured]
    if m.size == 0:
        raise ServeBenchError(f"the step at concurrency {concurrency} has no measured request: the server answered "
                              f"nothing after the warm-up. Check the step's log and the server log")
    p50, p90, p99 = np.percentile(m, [50, 90, 99], method=PERCENTILE_METHOD)
    return {"concurrency": concurrency, "requests": int(m.size), "errors": int((~ok).sum()),
            "warmup_requests": int((~measured).sum()), "window_s": window,
            "throughput_rps": float(done.sum() / window) if window > 0 else 0.0, "mean_ms": float(m.mean()),
            "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "max_ms": float(m.max()),
            "budget_exhausted": bool(doc.get("budget_exhausted", False)),
            "error_messages": tuple(doc.get("error_messages", ())),
            "latencies_ms": tuple(round(float(x), 3) for x in m)}
