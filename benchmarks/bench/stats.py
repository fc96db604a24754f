"""Statistics on raw latency samples (nanoseconds) and the regression test behind `compare`.
numpy only, so the worker in a peer venv can import it too."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PERCENTILE_METHOD = "linear"  # numpy's default (type 7, as R and Excel): stated in every report


@dataclass(frozen=True)
class Stats:
    n: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    std_ms: float  # sample standard deviation (ddof=1); 0 for one sample
    min_ms: float
    max_ms: float
    total_s: float  # sum of the samples
    sequences_per_s: float  # sequences per call / mean latency
    tokens_per_s: float  # real (non-padding) tokens per call / mean latency


def summarize(samples_ns, sequences_per_call: float = 1.0, tokens_per_call: float = 0.0) -> Stats:
    x = np.asarray(samples_ns, dtype=np.float64) / 1e6  # ms
    if x.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(x, [50, 90, 99], method=PERCENTILE_METHOD)
    mean = float(x.mean())
    return Stats(n=int(x.size), mean_ms=mean, p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
                 std_ms=float(x.std(ddof=1)) if x.size > 1 else 0.0, min_ms=float(x.min()), max_ms=float(x.max()),
                 total_s=float(x.sum() / 1e3), sequences_per_s=sequences_per_call / mean * 1e3 if mean else 0.0,
                 tokens_per_s=tokens_per_call / mean * 1e3 if mean else 0.0)


def mann_whitney_greater(new, old) -> float:
    """One-sided p-value that `new` tends to be larger than `old` (Mann-Whitney U, normal approximation with
    tie correction and continuity correction). Distribution-free: latency samples are skewed, not normal."""
    a, b = np.asarray(new, np.float64), np.asarray(old, np.float64)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return 1.0
    allx = np.concatenate([a, b])
    order = allx.argsort(kind="mergesort")
    ranks = np.empty_like(allx)
    sx = allx[order]
    # average ranks over ties
    i = 0
    r = np.arange(1, allx.size + 1, dtype=np.float64)
    while i < sx.size:
        j = i
        while j + 1 < sx.size and sx[j + 1] == sx[i]:
            j += 1
        r[i:j + 1] = (i + j + 2) / 2.0
        i = j + 1
    ranks[order] = r
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    _, counts = np.unique(sx, return_counts=True)
    n = n1 + n2
    tie = (counts ** 3 - counts).sum() / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie)
    if var <= 0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def bootstrap_ratio_ci(new, old, *, level: float = 0.99, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of median(new) / median(old): the run-to-run noise of the
    ratio, estimated from the samples' own spread."""
    a, b = np.asarray(new, np.float64), np.asarray(old, np.float64)
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, a.size, (resamples, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, (resamples, b.size))], axis=1)
    ratios = ma / mb
    lo, hi = np.percentile(ratios, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Change:
    ratio: float  # median(new) / median(old): > 1 is slower
    ci_low: float
    ci_high: float
    p_slower: float  # one-sided Mann-Whitney p that new is slower
    p_faster: float
    verdict: str  # "regression", "improvement", "same"


def judge_change(new_ns, old_ns, *, alpha: float = 0.01, level: float = 0.99) -> Change:
    """Regression: the samples say new is slower (Mann-Whitney p < alpha) AND the bootstrap interval of the
    median ratio lies wholly above 1. No fixed percentage: the threshold is the measured noise."""
    ratio = float(np.median(new_ns) / np.median(old_ns))
    lo, hi = bootstrap_ratio_ci(new_ns, old_ns, level=level)
    p_slow, p_fast = mann_whitney_greater(new_ns, old_ns), mann_whitney_greater(old_ns, new_ns)
    verdict = "same"
    if p_slow < alpha and lo > 1.0:
        verdict = "regression"
    elif p_fast < alpha and hi < 1.0:
        verdict = "improvement"
    return Change(ratio, lo, hi, p_slow, p_fast, verdict)
