"""Prometheus metrics of the service, in a registry of its own (one per app, so tests can run several)."""
from __future__ import annotations

from typing import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY = (.001, .0025, .005, .0075, .01, .015, .025, .05, .075, .1, .25, .5, 1, 2.5, 5, 10, 30)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
TOKENS = (16, 64, 256, 1024, 4096, 16384, 65536)
PREFIX = "distilbert_deploy"


class Metrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_requests", "Requests by model, endpoint and HTTP status",
                                ("model", "endpoint", "status"), registry=r)
        self.errors = Counter(f"{PREFIX}_errors", "Failed requests by kind", ("model", "kind"), registry=r)
        self.request_seconds = Histogram(f"{PREFIX}_request_seconds", "Total time per request, arrival to answer",
                                         ("model", "endpoint"), buckets=LATENCY, registry=r)
        self.queue_seconds = Histogram(f"{PREFIX}_queue_wait_seconds", "Time a row waited in the queue before its "
                                       "batch ran", ("model",), buckets=LATENCY, registry=r)
        self.inference_seconds = Histogram(f"{PREFIX}_inference_seconds", "Runtime time per batch", ("model",),
                                           buckets=LATENCY, registry=r)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "Rows per batch", ("model",), buckets=SIZES, registry=r)
        self.batch_tokens = Histogram(f"{PREFIX}_batch_tokens", "Tokens per batch, padding included", ("model",),
                                      buckets=TOKENS, registry=r)
        self.padding_tokens = Histogram(f"{PREFIX}_padding_tokens", "Padding tokens per batch", ("model",),
                                        buckets=(0,) + TOKENS, registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Rows waiting in the queue", ("model",), registry=r)
        self.inflight = Gauge(f"{PREFIX}_inflight_requests", "Requests accepted and not yet answered", registry=r)

    def observer(self, model: str) -> "ModelObserver":
        return ModelObserver(self, model)


class ModelObserver:
    """The batcher's view of the metrics (it knows nothing of Prometheus)."""

    def __init__(self, m: Metrics, model: str):
        self.wait = m.queue_seconds.labels(model)
        self.infer = m.inference_seconds.labels(model)
        self.size = m.batch_size.labels(model)
        self.tokens = m.batch_tokens.labels(model)
        self.padding = m.padding_tokens.labels(model)
        self.gauge = m.queue_depth.labels(model)

    def batch(self, size: int, tokens: int, padding: int, waits: Sequence[float], infer_s: float) -> None:
        self.size.observe(size)
        self.tokens.observe(tokens)
        self.padding.observe(padding)
        self.infer.observe(infer_s)
        for w in waits:
            self.wait.observe(w)

    def depth(self, rows: int) -> None:
        self.gauge.set(rows)
