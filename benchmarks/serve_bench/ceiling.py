"""The in-process ceiling: the same artifact through `runtimes.pipeline.load_pipeline` on the same texts, in this
process, with no server and no HTTP, in three ways, and the ceiling is the best of them:
- `chunks`: calls of the service's max batch of texts, in corpus order (the pipeline sorts each call's texts by
  length and pads each batch to its longest, as the service's batcher pads each batch);
- `one-by-one`: one text per call (no padding at all; its p50 is reported for reference: the c=1 latency target
  is judged on paired.measure_paired, which times in-process and HTTP calls side by side);
- `sorted`: all the texts in one call: the pipeline sorts every text by length before it forms batches of the max
  batch size, the least padding any batching can reach (the service's batcher only sees what is queued).
Each runs until both a minimum time and a minimum call count are reached (never past MAX_FACTOR x the minimum
time), after an untimed warm-up, in the harness's loop (benchmarks/bench/timing.py)."""
from __future__ import annotations

import numpy as np

from ..bench.timing import Timing, time_calls
from .config import ServeBenchConfig
from .report import Ceiling

WARMUP_CALLS = 3
MAX_FACTOR = 5  # the time bound: a measurement stops at MAX_FACTOR x min time even below its call count
MODES = ("chunks", "one-by-one", "sorted")


def _timed(call, items: list, min_time_s: float, min_iters: int, warmup: int = WARMUP_CALLS) -> list[float]:
    """ms per call, cycling over items in order: the harness's loop (bench/timing.py) on one handle."""
    timing = Timing(warmup=warmup, min_time_s=min_time_s, min_iters=min_iters, calls_per_turn=len(items), rewarm=0,
                    settle_s=0.0, max_time_s=max(MAX_FACTOR * min_time_s, 1.0))
    return [x / 1e6 for x in time_calls({"ceiling": (call, items)}, timing, "ceiling")["ceiling"]]


def _rate(texts_per_call: list[int], ms: list[float]) -> float:
    return sum(texts_per_call[k % len(texts_per_call)] for k in range(len(ms))) / (sum(ms) / 1e3)


def measure_ceiling(cfg: ServeBenchConfig, texts: list[str], when: str) -> Ceiling:
    from runtimes.base import RuntimeOptions
    from runtimes.pipeline import load_pipeline

    threads = cfg.effective_ceiling_threads
    pipe = load_pipeline(cfg.artifact, RuntimeOptions(threads=threads), batch_size=cfg.batch_size)
    try:
        b = cfg.batch_size
        chunks = [texts[i:i + b] for i in range(0, len(texts) - b + 1, b)] or [texts]
        chunk_ms = _timed(pipe, chunks, cfg.ceiling_min_time_s, cfg.ceiling_min_iters)
        single_ms = _timed(pipe, texts, cfg.ceiling_min_time_s, cfg.ceiling_min_iters)
        sorted_ms = _timed(pipe, [texts], cfg.ceiling_min_time_s, 1, warmup=0)  # warm already
    finally:
        pipe.runtime.close()
    p50, p90 = np.percentile(single_ms, [50, 90])
    modes = {"chunks": _rate([len(c) for c in chunks], chunk_ms), "one-by-one": _rate([1], single_ms),
             "sorted": _rate([len(texts)], sorted_ms)}
    best = max(modes, key=modes.get)
    return Ceiling(when=when, batch_size=b, threads=threads, throughput_texts_per_s=modes[best], best_mode=best,
                   modes_texts_per_s=modes, chunk_ms=tuple(round(x, 3) for x in chunk_ms),
                   sorted_pass_ms=tuple(round(x, 3) for x in sorted_ms), single_p50_ms=float(p50),
                   single_p90_ms=float(p90), single_ms=tuple(round(x, 3) for x in single_ms))
