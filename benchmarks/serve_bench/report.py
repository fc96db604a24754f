"""The service load report: typed, versioned JSON (dataclasses) and the target judgement (pure). Its Markdown and
PNG are in render.py."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from benchmarks.report_io import ReportError, check_header, read_json

SCHEMA_VERSION = 4  # 2: the paired c=1 latency (`paired`); 3: peer failures, what each server listened on;
# 4: the paired c=1 latency over gRPC too (`paired_grpc`, Paired.protocol); a version-3 report reads as 4 without it
BATCHING, NO_BATCHING = "batching", "no-batching"  # the two service configurations of a run
BATCHING_GRPC = "batching-grpc"  # our batching server again, driven over OIP v2 gRPC (--grpc): beside the gRPC peers
OURS = (BATCHING, NO_BATCHING, BATCHING_GRPC)
# The targets, judged in one run
SPEEDUP_MIN = 2.0  # at concurrency >= SPEEDUP_FROM: batching throughput / no-batching throughput
SPEEDUP_FROM = 16
P50_SLACK_MS = 2.0  # at concurrency 1: service p50 <= in-process p50 + this (both from the paired measurement)
BOUNDARY_EPS_MS = 1e-9  # float rounding: a difference of exactly P50_SLACK_MS counts as met
CEILING_FRACTION = 0.85  # at concurrency CEILING_AT: service throughput >= this x the in-process ceiling
CEILING_AT = 64
PEER_FACTOR = 1.5  # at PEER_AT: our throughput >= this x the best peer's, with our p99 <= that peer's
PEER_AT = (16, 64)


@dataclass(frozen=True)
class Step:
    concurrency: int  # closed-loop users
    requests: int  # measured requests answered (ok or failed): started inside the measured window
    errors: int  # failed requests in the whole step, warm-up included
    warmup_requests: int
    window_s: float  # the measured window: end of warm-up .. last answer
    throughput_rps: float  # successful answers completed inside the window / window_s
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    budget_exhausted: bool  # the step stopped on its request budget, not its time
    locust: dict = field(default_factory=dict)  # locust's own CSV row for the measured requests (cross-check)
    server: dict = field(default_factory=dict)  # /metrics deltas over the step (warm-up included)
    error_messages: tuple[str, ...] = ()  # the first few failed requests' messages
    latencies_ms: tuple[float, ...] = ()  # every measured request, in start order


@dataclass(frozen=True)
class ServerRun:
    label: str  # BATCHING or NO_BATCHING
    max_batch_size: int
    command: str  # the serve command line
    ready_s: float  # start -> /v2/health/ready 200
    exit_code: int | None  # after SIGTERM (None: it had to be killed)
    steps: tuple[Step, ...]
    engine: str = "distilbert-deploy serve"  # or the peer: Ray Serve, Triton, KServe, infinity-emb
    rss_mb: float | None = None  # resident memory of the server's whole process tree after its steps
    served: str = ""  # the artifact it served when not the run's own (infinity: the ONNX one it was built from)
    note: str = ""  # how the engine was set up (peers.Launch.note)
    listening: tuple[str, ...] = ()  # address:port of every listening socket of its process tree, once ready


@dataclass(frozen=True)
class PeerFailure:
    """A peer that was asked for and could not be measured: a row of the report, never a missing one."""
    label: str
    error: str


@dataclass(frozen=True)
class Ceiling:
    when: str  # "before" or "after" the service runs
    batch_size: int  # the pipeline's batch size (the service's max batch)
    threads: int | None
    throughput_texts_per_s: float  # the best of modes_texts_per_s
    best_mode: str
    modes_texts_per_s: dict  # chunks / one-by-one / sorted (ceiling.py): texts / total time of the timed calls
    chunk_ms: tuple[float, ...]  # every timed call of batch_size texts in corpus order
    sorted_pass_ms: tuple[float, ...]  # every timed call of all the texts at once
    single_p50_ms: float  # one text per call
    single_p90_ms: float
    single_ms: tuple[float, ...]


@dataclass(frozen=True)
class Paired:
    """The c=1 latency measured side by side: one in-process call and one HTTP request to the running server per
    pair, on the same text, the order swapped every pair (paired.measure_paired). Latencies of the successful
    pairs only, in pair order; the figures are paired_stats() of them."""
    configuration: str  # the server it ran against (BATCHING)
    when: str  # where in the run
    threads: int | None  # the in-process pipeline's intra-op threads
    warmup_pairs: int  # untimed pairs before the measured ones
    max_pairs: int  # the count bound
    max_s: float  # the time bound
    stopped_by: str  # "count" or "time"
    duration_s: float  # wall time of the measured pairs
    requests: int  # HTTP requests sent, warm-up included
    errors: int  # of them failed: not 200, not a text-classification answer, or no answer; their pairs are dropped
    error_messages: tuple[str, ...]  # the first few
    connections: int  # TCP connections opened (1: one keep-alive connection throughout)
    pairs: int  # measured pairs with a successful HTTP answer
    inprocess_p50_ms: float | None
    inprocess_p90_ms: float | None
    service_p50_ms: float | None
    service_p90_ms: float | None
    median_diff_ms: float | None  # median over the pairs of (service - in-process)
    p50_diff_ms: float | None  # service p50 - in-process p50: what the target is judged on
    inprocess_ms: tuple[float, ...]  # per pair
    service_ms: tuple[float, ...]  # per pair, client side: request sent .. answer body read
    service_first: tuple[bool, ...]  # per pair: the HTTP request went first
    protocol: str = "task"  # what the requests spoke: "task" (POST /v1/models/M/predict) or "oip-grpc-text"


@dataclass(frozen=True)
class Target:
    id: str
    text: str  # what the issue asks
    measured: str  # the numbers it was judged on
    met: bool | None  # None: not measured in this run (a step it needs was not run)


@dataclass(frozen=True)
class ServeBenchReport:
    created: str
    command: str
    model: str
    task: str
    artifact: str
    backend: str
    precision: str
    config: dict
    method: dict
    load: dict  # the load generator: tool, version, user class, texts
    environment: dict
    ceilings: tuple[Ceiling, ...]
    runs: tuple[ServerRun, ...]
    targets: tuple[Target, ...]
    paired: Paired | None  # None: not measured (the run has no batching server)
    notes: tuple[str, ...] = ()
    failures: tuple[PeerFailure, ...] = ()
    paired_grpc: Paired | None = None  # the same measurement against the gRPC run (None: no gRPC run)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "report") -> "ServeBenchReport":
        if isinstance(d, dict) and d.get("schema_version") == 3:  # 4 only added paired_grpc (and its default)
            d = {**d, "schema_version": SCHEMA_VERSION}
        check_header(d, where, SCHEMA_VERSION, "serve-bench.json", "make bench-serve")
        try:
            ceilings = tuple(Ceiling(**{**c, **{k: tuple(c[k]) for k in ("chunk_ms", "sorted_pass_ms", "single_ms")}})
                             for c in d["ceilings"])
            runs = tuple(ServerRun(**{**r, "listening": tuple(r.get("listening", ())),
                                      "steps": tuple(Step(**{**s, "latencies_ms": tuple(s["latencies_ms"]),
                                                             "error_messages": tuple(s.get("error_messages", ()))})
                                                     for s in r["steps"])}) for r in d["runs"])
            failures = tuple(PeerFailure(**f) for f in d.get("failures", ()))
            targets = tuple(Target(**t) for t in d["targets"])
            paired, paired_grpc = _paired_of(d["paired"]), _paired_of(d.get("paired_grpc"))
            known = {f.name for f in fields(cls)}
            rest = {k: v for k, v in d.items() if k in known and k not in (
                "ceilings", "runs", "targets", "paired", "paired_grpc", "notes", "failures")}
            return cls(**{**rest, "ceilings": ceilings, "runs": runs, "targets": targets, "paired": paired,
                          "paired_grpc": paired_grpc, "notes": tuple(d.get("notes", ())), "failures": failures})
        except (KeyError, TypeError, ValueError) as e:
            raise ReportError(f"{where}: malformed service benchmark report ({type(e).__name__}: {e}). Fix: pass a "
                              f"serve-bench.json written by `make bench-serve`, or re-run it") from None


def load_report(path: str | os.PathLike) -> ServeBenchReport:
    data = read_json(path, "make bench-serve", "reports/serve-bench/serve-bench.json")
    return ServeBenchReport.from_dict(data, where=str(path))


# ------------------------------------------------------------------------------------ the targets (pure)

def _step(runs: list[dict], label: str, concurrency: int) -> dict | None:
    for r in runs:
        if r["label"] == label:
            for s in r["steps"]:
                if s["concurrency"] == concurrency:
                    return s
    return None


def ceiling_figures(ceilings: list[dict]) -> tuple[float | None, float | None]:
    """(ceiling throughput, in-process one-text p50), both taken the way that is hardest on the service: the
    best throughput and the lowest p50 of the in-process runs."""
    if not ceilings:
        return None, None
    return max(c["throughput_texts_per_s"] for c in ceilings), min(c["single_p50_ms"] for c in ceilings)


def inprocess_batching_gain(ceilings: list[dict]) -> float | None:
    """The most batching can gain on these texts with this runtime, measured in-process: the best `sorted`
    throughput (every text sorted by length, then batched: least padding) over the best `one-by-one` one."""
    srt = [c["modes_texts_per_s"].get("sorted") for c in ceilings]
    one = [c["modes_texts_per_s"].get("one-by-one") for c in ceilings]
    srt, one = [x for x in srt if x], [x for x in one if x]
    return max(srt) / max(one) if srt and one else None


def _paired_of(p: dict | None) -> Paired | None:
    if p is None:
        return None
    return Paired(**{**p, **{k: tuple(p[k]) for k in ("error_messages", "inprocess_ms", "service_ms", "service_first")}})


def paired_stats(inprocess_ms: Sequence[float], service_ms: Sequence[float]) -> dict:
    """The figures of the paired c=1 measurement from its per-pair latencies (pair k = inprocess_ms[k],
    service_ms[k]): p50/p90 of each side (numpy `linear`), the median of the per-pair differences (service -
    in-process) and the difference of the p50s. No pairs: the figures are None."""
    import numpy as np

    a, b = np.asarray(inprocess_ms, dtype=np.float64), np.asarray(service_ms, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired latencies must be two lists of the same length; got {a.shape} and {b.shape}")
    if a.size == 0:
        return dict.fromkeys(("inprocess_p50_ms", "inprocess_p90_ms", "service_p50_ms", "service_p90_ms",
                              "median_diff_ms", "p50_diff_ms")) | {"pairs": 0}
    (ip50, ip90), (sp50, sp90) = np.percentile(a, [50, 90]), np.percentile(b, [50, 90])
    return {"pairs": int(a.size), "inprocess_p50_ms": float(ip50), "inprocess_p90_ms": float(ip90),
            "service_p50_ms": float(sp50), "service_p90_ms": float(sp90),
            "median_diff_ms": float(np.median(b - a)), "p50_diff_ms": float(sp50 - ip50)}


def judge(runs: list[dict], ceilings: list[dict], max_queue: int, paired: dict | None = None,
          task: str = "text-classification", paired_grpc: dict | None = None) -> list[Target]:
    """The issue's targets, from the measured steps (dicts as in the JSON) of one run, the in-process ceilings and
    the paired c=1 measurements (the latency target is judged on them alone: REST, and gRPC when paired_grpc is
    given). A feature-extraction run (our
    /v1/embeddings against the peers) has no ceiling, paired or no-batching run: only the zero-error target."""
    ceiling, _ = ceiling_figures(ceilings)
    out = []
    if task != "text-classification":
        return [_no_errors(runs, max_queue, paired)]
    # 1. batching >= 2x no batching at every measured concurrency >= 16
    pairs = sorted({s["concurrency"] for r in runs for s in r["steps"] if s["concurrency"] >= SPEEDUP_FROM})
    parts, met = [], []
    for c in pairs:
        on, off = _step(runs, BATCHING, c), _step(runs, NO_BATCHING, c)
        if on is None or off is None:
            continue
        x = on["throughput_rps"] / off["throughput_rps"] if off["throughput_rps"] > 0 else float("inf")
        parts.append(f"c={c}: {on['throughput_rps']:.1f} / {off['throughput_rps']:.1f} req/s = {x:.2f}x")
        met.append(x >= SPEEDUP_MIN)
    gain = inprocess_batching_gain(ceilings)
    if parts and gain is not None:
        parts.append(f"in-process, the best batching of these texts (all sorted by length) gives {gain:.2f}x one "
                     f"text per call")
    out.append(Target("batching-speedup", f"at concurrency >= {SPEEDUP_FROM}, batching gives >= {SPEEDUP_MIN:g}x "
                                          f"the throughput of `--max-batch-size 1`",
                      "; ".join(parts) or "no step at concurrency >= 16 for both configurations",
                      all(met) if met else None))
    # 2. concurrency 1: service p50 <= in-process p50 + 2 ms, both measured side by side, interleaved
    out.append(_latency_c1("latency-c1", "", paired))
    if paired_grpc is not None:
        out.append(_latency_c1("latency-c1-grpc", " (OIP v2 gRPC)", paired_grpc))
    # 3. concurrency 64: throughput >= 85% of the in-process ceiling of the same artifact
    at = _step(runs, BATCHING, CEILING_AT)
    what = f"at concurrency {CEILING_AT}, throughput >= {CEILING_FRACTION:.0%} of the in-process ceiling"
    if at is None or not ceiling:
        out.append(Target(f"ceiling-c{CEILING_AT}", what, "not measured", None))
    else:
        frac = at["throughput_rps"] / ceiling
        out.append(Target(f"ceiling-c{CEILING_AT}", what,
                          f"{at['throughput_rps']:.1f} req/s of {ceiling:.1f} texts/s = {frac:.0%}",
                          frac >= CEILING_FRACTION))
    out.append(_no_errors(runs, max_queue, paired, paired_grpc))
    return out


def _latency_c1(tid: str, over: str, p: dict | None) -> Target:
    text = f"at concurrency 1{over}, service p50 <= in-process p50 + {P50_SLACK_MS:g} ms"
    if not p or not p.get("pairs"):
        return Target(tid, text, "not measured (needs the paired measurement against the batching server, with at "
                                 "least one successful pair)", None)
    errs = f"; {p['errors']} failed requests dropped" if p.get("errors") else ""
    return Target(tid, text, f"measured side by side, interleaved ({p['pairs']} pairs, order swapped every pair, "
                             f"{p['configuration']} server): service p50 {p['service_p50_ms']:.2f} ms, in-process p50 "
                             f"{p['inprocess_p50_ms']:.2f} ms: {p['p50_diff_ms']:+.2f} ms (median per-pair "
                             f"difference {p['median_diff_ms']:+.2f} ms){errs}",
                  p["p50_diff_ms"] <= P50_SLACK_MS + BOUNDARY_EPS_MS)


def _no_errors(runs: list[dict], max_queue: int, paired: dict | None, paired_grpc: dict | None = None) -> Target:
    # no errors below the queue limit (one row per request: every step with concurrency <= max_queue)
    # and the paired measurement's requests (one at a time)
    below = [(r["label"], s) for r in runs for s in r["steps"] if s["concurrency"] <= max_queue
             and r["label"] in OURS]
    errs = [f"{label} c={s['concurrency']}: {s['errors']}" for label, s in below if s["errors"]]
    paired_part = ""
    for p, what in ((paired, "the paired c=1 measurement"), (paired_grpc, "the paired c=1 measurement over gRPC")):
        if p:
            paired_part += f" and {what} ({p['requests']} requests)"
            if p["errors"]:
                errs.append(f"{what.removeprefix('the ')}: {p['errors']}")
    return Target("no-errors", f"0 errors below the queue limit ({max_queue} rows)",
                  ("errors in " + "; ".join(errs)) if errs else
                  f"0 errors in {len(below)} steps ({sum(s['requests'] + s['warmup_requests'] for _, s in below)}"
                  f" requests){paired_part}", (not errs) if (below or paired or paired_grpc) else None)


def peer_targets(runs: list[dict], failures: Sequence[dict] = ()) -> list[Target]:
    """The peers target: at each of PEER_AT, our service (batching) >= PEER_FACTOR x the best peer's throughput, at
    an equal or lower p99 than that peer's; then per peer engine whether we at least match it (p99s alongside). A
    peer that failed is a row of its own (not measured), and the peers target over the others says so."""
    peers = [r for r in runs if r["label"] not in OURS]
    if not peers and not failures:
        return []
    failed = [f["label"] for f in failures]
    parts, met = [], []
    for c in PEER_AT:
        ours = _step(runs, BATCHING, c)
        theirs = [(r, s) for r in peers for s in r["steps"] if s["concurrency"] == c]
        if ours is None or not theirs:
            continue
        best, bs = max(theirs, key=lambda x: x[1]["throughput_rps"])
        x = ours["throughput_rps"] / bs["throughput_rps"] if bs["throughput_rps"] else float("inf")
        ok = x >= PEER_FACTOR and ours["p99_ms"] <= bs["p99_ms"]
        parts.append(f"c={c}: ours {ours['throughput_rps']:.1f} req/s (p99 {ours['p99_ms']:.1f} ms) vs the best peer, "
                     f"{best['label']}, {bs['throughput_rps']:.1f} (p99 {bs['p99_ms']:.1f} ms) = {x:.2f}x"
                     + ("" if ours["p99_ms"] <= bs["p99_ms"] else ", at a higher p99"))
        met.append(ok)
    if failed:
        parts.append(f"not measured: {', '.join(failed)} (failed to start or run)")
    out = [Target("peers", f"at concurrency {' and '.join(map(str, PEER_AT))}, our throughput >= {PEER_FACTOR:g}x the "
                           f"best peer's, at an equal or lower p99",
                  "; ".join(parts) or "no common step", None if failed or not met else all(met))]
    for r in peers:
        parts, met = [], []
        for s in sorted(r["steps"], key=lambda s: s["concurrency"]):
            ours = _step(runs, BATCHING, s["concurrency"])
            if ours is None:
                continue
            ratio = ours["throughput_rps"] / s["throughput_rps"] if s["throughput_rps"] else float("inf")
            parts.append(f"c={s['concurrency']}: ours {ours['throughput_rps']:.1f} req/s (p99 {ours['p99_ms']:.1f} ms) "
                         f"vs {s['throughput_rps']:.1f} (p99 {s['p99_ms']:.1f} ms) = {ratio:.2f}x")
            met.append(ours["throughput_rps"] >= s["throughput_rps"])
        out.append(Target(f"peer-{r['label']}", f"our service (batching) at least matches {r['engine']}'s throughput "
                                                f"at every concurrency (p99 alongside)",
                          "; ".join(parts) or "no common step", all(met) if met else None))
    out += [Target(f"peer-{f['label']}", f"our service (batching) at least matches {f['label']}'s throughput",
                   f"not measured: {table_cell(f['error'], 200)} (the whole error: Peer failures below)", None)
            for f in failures]
    return out


def table_cell(text: str, n: int = 300) -> str:
    one = " ".join(str(text).split())
    return (one[:n] + "…" if len(one) > n else one).replace("|", "\\|")
