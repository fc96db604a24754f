"""The service load report: typed, versioned JSON (dataclasses), the target judgement, and its renderings.
Markdown and PNG are pure functions of the JSON dict, so any old report re-renders
(`distilbert-deploy serve-bench render REPORT.json`)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from benchmarks.bench.report import ReportError, check_header, read_json, save_png, write_atomic, write_files
from runtimes.hardware import isa_text

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
    pair, on the same text, the order swapped every pair (runner.measure_paired). Latencies of the successful
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
                   f"not measured: {_cell(f['error'], 200)} (the whole error: Peer failures below)", None)
            for f in failures]
    return out


def _peers_section(d: dict) -> list[str]:
    runs, failures = d["runs"], d.get("failures", ())
    if not any(r["label"] not in OURS for r in runs) and not failures:
        return []
    L = ["", "## Peers under the same load", "",
         "The same artifact and the same tweets, one engine at a time, each started, measured and stopped in turn "
         "(throughput req/s, p50 / p99 ms per concurrency; startup = spawn to ready; memory = resident set of the "
         "engine's whole process tree after its steps).", "",
         "| engine | " + " | ".join(f"c={c}" for c in sorted({s['concurrency'] for r in runs for s in r['steps']}))
         + " | startup s | memory MiB |"]
    conc = sorted({s["concurrency"] for r in runs for s in r["steps"]})
    L.append("|---|" + "---|" * (len(conc) + 2))
    for r in runs:
        if r["label"] == NO_BATCHING:
            continue
        by = {s["concurrency"]: s for s in r["steps"]}
        cells = [f"{by[c]['throughput_rps']:.1f} ({_ms(by[c]['p50_ms'])} / {_ms(by[c]['p99_ms'])})"
                 + (f", {by[c]['errors']} err" if by[c]["errors"] else "") if c in by else "–" for c in conc]
        L.append(f"| {r.get('engine', r['label'])} ({r['label']}) | " + " | ".join(cells)
                 + f" | {_f(r['ready_s'])} | {_f(r.get('rss_mb'), 0)} |")
    for f in failures:
        L.append(f"| {f['label']} | **failed**: {_cell(f['error'])} |" + " |" * (len(conc) + 1))
    said = {r["label"]: [x for x in (r.get("note"), f"served `{r['served']}`" if r.get("served") else "",
                                     f"listened on {', '.join(r['listening'])}" if r.get("listening") else "") if x]
            for r in runs if r["label"] not in OURS}
    notes = [f"- **{label}**: " + "; ".join(parts) for label, parts in said.items() if parts]  # older reports: none
    L += [""] + notes if notes else []
    for f in failures:
        L += ["", f"### Peer failure: {f['label']}", "", "```", f["error"].strip(), "```"]
    return L


def _cell(text: str, n: int = 300) -> str:
    one = " ".join(str(text).split())
    return (one[:n] + "…" if len(one) > n else one).replace("|", "\\|")


# ---------------------------------------------------------------- rendering (pure functions of the dict)

def _f(x, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ms(x) -> str:
    if x is None:
        return "–"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _verdict(met) -> str:
    return {True: "**met**", False: "**not met**", None: "not measured"}[met]


def _paired_section(p: dict | None, endpoint: str, over: str = "") -> list[str]:
    L = ["", f"## Paired latency at concurrency 1{over} (in-process and service, side by side)", ""]
    if p is None:
        return L + ["Not measured in this run (it runs against the batching server)."]
    grpc = p.get("protocol") == "oip-grpc-text"
    call = "gRPC `ModelInfer` (one BYTES `text`)" if grpc else f"`POST {endpoint}`"
    kind = "gRPC" if grpc else "HTTP"
    conn = "one gRPC channel" if grpc else "one keep-alive connection"
    wire = "gRPC, protobuf" if grpc else "HTTP, JSON"
    L += [f"The latency target is judged here, not on the locust c=1 step above: with the {p['configuration']} server "
          f"up ({p['when']}), this process loaded the same artifact in-process ({p['threads'] or 'default'} threads) "
          f"and, on the same held-out texts one at a time, alternated one in-process call and one "
          f"{call} over {conn}, swapping which goes first every pair. "
          f"Both sides of a pair are measured within milliseconds of each other, so a slow moment of the shared "
          f"machine slows both alike and cancels out of the difference (what it does not cancel is a lasting "
          f"difference between the two processes' runtimes, e.g. where their threads run). "
          f"The service side is client side (request sent to answer read: {wire}, tokenizing, the batcher and "
          f"the runtime in the server process).", "",
          f"| | in-process | service ({kind}) | service − in-process |", "|---|---|---|---|",
          f"| p50 ms | {_ms(p['inprocess_p50_ms'])} | {_ms(p['service_p50_ms'])} | {_diff(p['p50_diff_ms'])} |",
          f"| p90 ms | {_ms(p['inprocess_p90_ms'])} | {_ms(p['service_p90_ms'])} | "
          f"{_diff(None if p['pairs'] == 0 else p['service_p90_ms'] - p['inprocess_p90_ms'])} |",
          f"| median of the per-pair differences, ms | – | – | {_diff(p['median_diff_ms'])} |", "",
          f"{p['pairs']} pairs in {p['duration_s']:.1f} s after {p['warmup_pairs']} untimed warm-up pairs; stopped by "
          f"its {p['stopped_by']} bound (at most {p['max_pairs']} pairs or {p['max_s']:g} s); {p['requests']} {kind} "
          f"requests over {p['connections']} {'channel' if grpc else 'connection'}(s), {p['errors']} errors."]
    if p["error_messages"]:
        L += ["", "Errors (first few): " + "; ".join(f"`{e}`" for e in p["error_messages"])]
    return L


def _diff(x) -> str:
    return "–" if x is None else f"{x:+.2f}"


def to_markdown(d: dict) -> str:
    env, cfg, m, load = d["environment"], d["config"], d["method"], d["load"]
    cpu = env.get("cpu", {})
    flags = isa_text(cpu)
    git = env.get("git", {})
    lib = env.get("libraries", {})
    libs = ", ".join(f"{k} {v}" for k, v in lib.items() if k != "distilbert-deploy")
    ceiling, inproc_p50 = ceiling_figures(d["ceilings"])
    L = [f"# Service load benchmark: `{d['model']}` {d['task']} ({d['backend']} {d['precision']})", "",
         f"Created {d['created']} by `{d['command']}`.", "",
         f"- **Machine**: {cpu.get('model')}, {cpu.get('physical_cores')} cores / {cpu.get('logical_cpus')} threads "
         f"({cpu.get('usable_cpus')} usable), flags: {flags}; load average at start {cpu.get('load_average_1_5_15')}"
         f", at end {env.get('load_average_end')}. The load generator, the server's event loop and the runtime "
         f"share these CPUs.",
         f"- **Software**: Python {env.get('python')}, {libs}; git {str(git.get('sha'))[:12]}"
         + (" (dirty)" if git.get("dirty") else ""),
         f"- **Service**: `{m['serve_command']}` with `--max-batch-size {cfg['batch_size']}` (batching) or "
         f"`--max-batch-size 1` (no batching); one server process at a time, stopped with SIGTERM.",
         f"- **Load**: {load['tool']} {load['version']} headless, `{load['user_class']}`, closed loop (each user sends "
         f"its next request when the answer is in, so concurrency = users); one text per request to "
         f"`POST {load['endpoint']}`; {load['texts']} held-out tweets ({load['text_source']}), mean "
         f"{load['mean_chars']:.0f} characters, cycled in order; 127.0.0.1 only.",
         f"- **Steps**: {m['steps']}",
         f"- **Figures**: {m['figures']}",
         f"- **Ceiling**: {m['ceiling']}",
         f"- **Paired c=1 latency**: {m['paired']}", ""]
    L += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for t in d["targets"]:
        L.append(f"| {t['text']} | {t['measured']} | {_verdict(t['met'])} |")
    L += ["", "## Results", "",
          "| configuration | concurrency | requests | throughput req/s | of ceiling | p50 ms | p90 ms | p99 ms | "
          "errors | mean batch (server) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["runs"]:
        for s in r["steps"]:
            frac = f"{s['throughput_rps'] / ceiling:.0%}" if ceiling else "–"
            mb = s["server"].get("mean_batch_size")
            L.append(f"| {r['label']} (max batch {r['max_batch_size']}) | {s['concurrency']} | {s['requests']} | "
                     f"{_f(s['throughput_rps'])} | {frac} | {_ms(s['p50_ms'])} | {_ms(s['p90_ms'])} | "
                     f"{_ms(s['p99_ms'])} | {s['errors']} | {_f(mb, 2)} |")
    if ceiling:
        L.append(f"| in-process ceiling | – | – | {_f(ceiling)} texts/s | "
                 f"100% | {_ms(inproc_p50)} (one text) | – | – | – | – |")
    on = {s["concurrency"]: s for r in d["runs"] if r["label"] == BATCHING for s in r["steps"]}
    off = {s["concurrency"]: s for r in d["runs"] if r["label"] == NO_BATCHING for s in r["steps"]}
    both = sorted(set(on) & set(off))
    if both:
        L += ["", "Batching on / off, throughput: " + ", ".join(
            f"c={c}: {on[c]['throughput_rps'] / off[c]['throughput_rps']:.2f}x" if off[c]["throughput_rps"] else
            f"c={c}: –" for c in both) + "."]
    L += _peers_section(d)
    L += _paired_section(d.get("paired"), load["endpoint"])
    if d.get("paired_grpc"):
        L += _paired_section(d["paired_grpc"], load["endpoint"], " over gRPC")
    L += ["", "## In-process ceiling", "",
          "Texts/s of the same pipeline in three ways: `chunks` (calls of the max batch of texts, in corpus order), "
          "`one-by-one` (one text per call), `sorted` (all texts in one call: sorted by length, then batched); the "
          "ceiling is the best of them.", "",
          "| run | batch size | threads | chunks texts/s | one-by-one texts/s | sorted texts/s | ceiling | "
          "one text p50 ms | one text p90 ms | calls (chunks / one text / sorted) |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for c in d["ceilings"]:
        mo = c["modes_texts_per_s"]
        L.append(f"| {c['when']} | {c['batch_size']} | {c['threads'] or 'default'} | {_f(mo.get('chunks'))} | "
                 f"{_f(mo.get('one-by-one'))} | {_f(mo.get('sorted'))} | {_f(c['throughput_texts_per_s'])} "
                 f"({c['best_mode']}) | {_ms(c['single_p50_ms'])} | {_ms(c['single_p90_ms'])} | "
                 f"{len(c['chunk_ms'])} / {len(c['single_ms'])} / {len(c['sorted_pass_ms'])} |")
    L += ["", "## Server side (from `/metrics`, whole step including warm-up)", "",
          "| configuration | concurrency | batches | mean rows per batch | inference ms per batch | inference ms per "
          "row | queue wait ms per row | padding | server time ms per request | CPU cores: server / load generator |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["runs"]:
        for s in r["steps"]:
            v = s["server"]
            pad = f"{v['padding_fraction']:.0%}" if v.get("padding_fraction") is not None else "–"
            per_row = (v["mean_inference_ms"] / v["mean_batch_size"] if v.get("mean_inference_ms") is not None
                       and v.get("mean_batch_size") else None)
            L.append(f"| {r['label']} | {s['concurrency']} | {v.get('batches', '–')} | {_f(v.get('mean_batch_size'), 2)}"
                     f" | {_ms(v.get('mean_inference_ms'))} | {_ms(per_row)} | {_ms(v.get('mean_queue_wait_ms'))} | "
                     f"{pad} | {_ms(v.get('mean_request_ms'))} | {_f(v.get('server_cpu_cores'), 2)} / "
                     f"{_f(v.get('load_generator_cpu_cores'), 2)} |")
    L += ["", "## Servers", "", "| configuration | command | ready after s | exit code after SIGTERM |",
          "|---|---|---|---|"]
    for r in d["runs"]:
        L.append(f"| {r['label']} | `{r['command']}` | {_f(r['ready_s'])} | "
                 f"{r['exit_code'] if r['exit_code'] is not None else 'killed'} |")
    L += ["", "## Locust's own figures (cross-check; locust rounds latencies to whole ms, 2 significant digits "
              "above 100 ms)", "",
          "| configuration | concurrency | requests | failures | p50 ms | p90 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for r in d["runs"]:
        for s in r["steps"]:
            lc = s["locust"]
            n = {k: "–" if lc.get(k) is None else f"{lc[k]:g}"
                 for k in ("requests", "failures", "p50_ms", "p90_ms", "p99_ms")}
            L.append(f"| {r['label']} | {s['concurrency']} | {n['requests']} | {n['failures']} | {n['p50_ms']} | "
                     f"{n['p90_ms']} | {n['p99_ms']} |")
    if d.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in d["notes"]]
    return "\n".join(L) + "\n"


def plot(d: dict, path: Path) -> bool:
    """Throughput vs concurrency (batching on and off, the ceiling as a line) and p50/p99 latency vs concurrency.
    Returns False when matplotlib is missing (the JSON and Markdown are still written)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ceiling, inproc_p50 = ceiling_figures(d["ceilings"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    styles = {BATCHING: ("tab:blue", "o"), NO_BATCHING: ("tab:orange", "s")}
    conc = sorted({s["concurrency"] for r in d["runs"] for s in r["steps"]})
    for r in d["runs"]:
        color, marker = styles.get(r["label"], ("tab:gray", "^"))
        pts = sorted((s["concurrency"], s) for s in r["steps"])
        xs = [c for c, _ in pts]
        name = f"{r['label']} (max batch {r['max_batch_size']})"
        ax1.plot(xs, [s["throughput_rps"] for _, s in pts], marker=marker, color=color, label=name)
        ax2.plot(xs, [s["p50_ms"] for _, s in pts], marker=marker, color=color, label=f"{name} p50")
        ax2.plot(xs, [s["p99_ms"] for _, s in pts], marker=marker, color=color, linestyle="--",
                 label=f"{name} p99")
    if ceiling:
        ax1.axhline(ceiling, color="tab:green", linestyle=":", label=f"in-process ceiling ({ceiling:.0f} texts/s)")
        ax1.axhline(ceiling * CEILING_FRACTION, color="tab:green", linestyle="-", alpha=0.3,
                    label=f"{CEILING_FRACTION:.0%} of the ceiling (target at c={CEILING_AT})")
    if inproc_p50:
        ax2.axhline(inproc_p50, color="tab:green", linestyle=":", label=f"in-process p50, one text "
                                                                         f"({inproc_p50:.2f} ms)")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        if conc:
            ax.set_xticks(conc, [str(c) for c in conc])
        ax.set_xlabel("concurrency (closed-loop users)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax1.set_ylim(bottom=0)
    ax1.set_ylabel("throughput (answers/s)")
    ax1.set_title("Throughput")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency, client side (ms)")
    ax2.set_title("Latency p50 (solid) and p99 (dashed)")
    fig.suptitle(f"{d['model']} {d['task']} served ({d['backend']} {d['precision']}) — "
                 f"{d['environment'].get('cpu', {}).get('model', '')}, {d['created']}", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
    return True


def write_all(d: dict, out_dir: Path, name: str = "serve-bench") -> dict[str, Path]:
    """JSON, Markdown and PNG, each written atomically (the Markdown is rendered before anything is written)."""
    return write_files(d, out_dir, name, to_markdown, plot)


def render(report_path: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Re-render a report's Markdown and PNG from its JSON (validated first)."""
    d = load_report(report_path).to_dict()
    out_dir = Path(out_dir) if out_dir else Path(report_path).parent
    name = Path(report_path).stem
    paths = {"md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    write_atomic(paths["md"], to_markdown(d).encode())
    if not plot(d, paths["png"]):
        paths.pop("png")
    return paths
