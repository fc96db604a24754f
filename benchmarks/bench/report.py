"""The benchmark report: typed, versioned JSON (dataclasses) and the speed-target judgement (pure). Its Markdown and
PNG are in render.py; the I/O every report shares is benchmarks/report_io.py."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from benchmarks.report_io import ReportError, check_header, read_json

from .stats import Stats


SCHEMA_VERSION = 1


BASELINE = "torch-eager-fp32"  # every ratio is against this target, measured in the same run


# The speed targets judged in a run (a speed target is a benchmark's verdict, never a unit test's assertion).
# Real text: each request padded to its own longest row is >= REALTEXT_SPEEDUP_MIN x faster than every request padded
# to the fixed length (mean latency per request, same requests, same run), on the workload it was set for:
REALTEXT_SPEEDUP_MIN = 3.0


REALTEXT_WORKLOAD = {"realtext_size": 128, "realtext_batch": 8, "realtext_fixed": 128, "realtext_sort": True,
                     "realtext_split": "heldout"}  # BenchConfig's defaults: 128 held-out tweets, sorted, 8 a request


@dataclass(frozen=True)
class TargetInfo:
    id: str
    kind: str  # artifact, torch, ort-default, ov-nncf, optimum-ort, optimum-ov
    artifact: str
    backend: str
    precision: str
    device: str
    launcher: str
    status: str  # "ok" or "skipped"
    reason: str = ""  # why it was skipped
    timer: str = ""
    includes_copies: bool | None = None  # host<->device copies inside the timed region (None: CPU)
    model_size_bytes: int | None = None
    load_s: float | None = None
    memory: dict = field(default_factory=dict)  # peak_rss_bytes, load_rss_delta_bytes, gpu_peak_bytes, note
    describe: dict = field(default_factory=dict)  # backend, versions, threads, providers ...


@dataclass(frozen=True)
class Result:
    scenario: str  # latency, sweep, realtext, throughput, coldstart
    workload: str
    target: str
    batch: int
    sequence: int
    padding: str
    sequences_per_call: float
    tokens_per_call: float  # real tokens
    padded_tokens_per_call: float
    samples_ns: tuple[int, ...]  # every timed call, in order
    stats: Stats
    extra: dict = field(default_factory=dict)  # cold start parts, real-text details


@dataclass(frozen=True)
class SpeedTarget:
    """A speed target judged on one measured target's results of the run (the JSON's `speed_targets`)."""
    id: str  # e.g. "realtext-dynamic"
    target: str  # the measured target (a TargetInfo id) it was judged for
    text: str  # what is asked
    measured: str  # the numbers it was judged on, and why it was not judged when it was not
    ratio: float | None  # the judged figure (None: not measured)
    met: bool | None  # None: not judged in this run (QUICK, or another workload than the target's)


@dataclass(frozen=True)
class BenchReport:
    created: str
    command: str
    model: str
    task: str
    method: dict  # timer, warm-up, stopping rule, interleaving, percentile method
    config: dict
    environment: dict
    targets: tuple[TargetInfo, ...]
    results: tuple[Result, ...]
    accuracy: dict = field(default_factory=dict)  # target id -> figures from a parity report
    notes: tuple[str, ...] = ()
    baseline: str = BASELINE
    speed_targets: tuple[SpeedTarget, ...] = ()  # judged_speed_targets() of the results; absent in older reports
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "report") -> "BenchReport":
        check_header(d, where, SCHEMA_VERSION, "bench.json", "make bench")
        try:
            targets = tuple(TargetInfo(**t) for t in d["targets"])
            results = tuple(Result(**{**r, "samples_ns": tuple(int(x) for x in r["samples_ns"]),
                                      "stats": Stats(**r["stats"])}) for r in d["results"])
            speed = tuple(SpeedTarget(**t) for t in d.get("speed_targets", ()))
            known = {f.name for f in fields(cls)}
            rest = {k: v for k, v in d.items()
                    if k in known and k not in ("targets", "results", "notes", "speed_targets")}
            return cls(**{**rest, "targets": targets, "results": results, "notes": tuple(d.get("notes", ())),
                          "speed_targets": speed})
        except (KeyError, TypeError, ValueError) as e:
            raise ReportError(f"{where}: malformed benchmark report ({type(e).__name__}: {e}). Fix: pass a "
                              f"bench.json written by `make bench`, or re-run it") from None


def load_report(path: str | os.PathLike) -> BenchReport:
    return BenchReport.from_dict(read_json(path, "make bench", "reports/bench.json"), where=str(path))


def ratios(d: dict) -> dict[tuple[str, str, str], float | None]:
    """(scenario, workload, target) -> speed-up against the baseline target on the same workload of the same
    run (baseline p50 / target p50); None when the baseline was not measured on that workload."""
    base = {(r["scenario"], r["workload"]): r["stats"]["p50_ms"] for r in d["results"] if r["target"] == d["baseline"]}
    out = {}
    for r in d["results"]:
        b = base.get((r["scenario"], r["workload"]))
        out[r["scenario"], r["workload"], r["target"]] = b / r["stats"]["p50_ms"] if b and r["stats"]["p50_ms"] else None
    return out


def _best_pass(r: dict) -> float | None:
    passes = r.get("extra", {}).get("pass_seconds")
    return min(passes) if passes else None


def _per_request_min(r: dict, passes: int) -> float | None:
    """Sum over requests of each request's fastest time in the first `passes` passes."""
    n = r.get("extra", {}).get("requests_per_pass")
    xs = r["samples_ns"]
    if not n or len(xs) < n * passes:
        return None
    return float(np.asarray(xs[:n * passes], dtype=np.float64).reshape(passes, n).min(axis=0).sum())


def realtext_speedups(d: dict, stat: str = "mean") -> dict[str, dict[str, float]]:
    """target -> {padding: time with fixed padding / time with this padding}, on the same requests in the same
    run. stat 'mean': mean latency per request (all passes); 'best_pass': the fastest whole pass over the requests
    (least disturbed by neighbours, as timeit's best-of)."""
    rows = [r for r in d["results"] if r["scenario"] == "realtext"]
    out: dict[str, dict[str, float]] = {}
    for t in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == t]
        if stat == "per_request_min":  # the same number of passes for every padding: no padding gets more tries
            k = min((len(r["samples_ns"]) // max(1, r.get("extra", {}).get("requests_per_pass") or 1)) for r in mine)
            by = {r["padding"]: _per_request_min(r, k) if k else None for r in mine}
        else:
            by = {r["padding"]: (r["stats"]["mean_ms"] if stat == "mean" else _best_pass(r)) for r in mine}
        if by.get("fixed"):
            out[t] = {p: by["fixed"] / v for p, v in by.items() if p != "fixed" and v}
    return out


def _workload_text(w: dict) -> str:
    split = {"heldout": "held-out"}.get(w.get("realtext_split"), w.get("realtext_split"))
    return (f"the first {w.get('realtext_size')} {split} tweets, "
            + ("length-sorted" if w.get("realtext_sort") else "in corpus order")
            + f", {w.get('realtext_batch')} a request, fixed padding {w.get('realtext_fixed')}")


def judged_speed_targets(d: dict) -> list[SpeedTarget]:
    """The run's speed targets, judged on its own results (a pure function of the report dict). Per artifact target
    that ran the realtext scenario: dynamic padding (each request padded to its own longest row) is at least
    REALTEXT_SPEEDUP_MIN x faster than fixed padding, mean latency per request. Judged only on REALTEXT_WORKLOAD and
    never on a QUICK run: there met is None and `measured` says why (the ratio is still given)."""
    rows = [r for r in d["results"] if r["scenario"] == "realtext"]
    if not rows:
        return []
    cfg = d.get("config") or {}
    kinds = {t["id"]: t["kind"] for t in d["targets"]}
    means, best = realtext_speedups(d), realtext_speedups(d, "best_pass")
    fixed = REALTEXT_WORKLOAD["realtext_fixed"]
    text = (f"real text: each request padded to its own longest row is >= {REALTEXT_SPEEDUP_MIN:g}x faster than "
            f"every request padded to {fixed} tokens (mean latency per request, same requests, same run; "
            f"{_workload_text(REALTEXT_WORKLOAD)})")
    if cfg.get("quick"):
        why = "QUICK run (tiny shapes and counts: a smoke test of the harness, not a measurement)"
    elif other := {k: cfg.get(k) for k, v in REALTEXT_WORKLOAD.items() if cfg.get(k) != v}:
        why = "this run's workload is not the target's (" + ", ".join(f"{k}={v}" for k, v in other.items()) + ")"
    else:
        why = ""
    out = []
    for tid in dict.fromkeys(r["target"] for r in rows):
        if kinds.get(tid) != "artifact":  # baselines and peers are references, not what the project ships
            continue
        x = means.get(tid, {}).get("dynamic")
        if x is None:
            out.append(SpeedTarget("realtext-dynamic", tid, text, "not measured (no dynamic and fixed padding rows "
                                                                  "for this target)", None, None))
            continue
        mean = {r["padding"]: r["stats"]["mean_ms"] for r in rows if r["target"] == tid}
        b = best.get(tid, {}).get("dynamic")
        measured = (f"mean {ms_text(mean['fixed'])} ms a request padded to {cfg.get('realtext_fixed')} / "
                    f"{ms_text(mean['dynamic'])} ms padded to its own length = {x:.2f}x"
                    + (f" (best pass {b:.2f}x)" if b else ""))
        out.append(SpeedTarget("realtext-dynamic", tid, text, measured + (f"; not judged: {why}" if why else ""),
                               x, None if why else x >= REALTEXT_SPEEDUP_MIN))
    return out


def ms_text(x) -> str:
    """A latency in ms as the reports print it."""
    if x is None:
        return "–"
    return f"{x:.3g}" if x < 10 else f"{x:.1f}"
