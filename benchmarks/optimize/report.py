"""The selection report: selection.json (everything), selection.md (one row per candidate, peer and baseline, and
why each loser lost), selection.png (p50 per workload). The report is typed (SelectionReport) and written through
benchmarks/report_io.py; `to_markdown` renders the JSON document, validating it first."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from benchmarks.report_io import parse, pyplot, save_png, write_report
from runtimes.hardware import CPU_CLASS_NAMES


@dataclass(frozen=True)
class Recipe:
    """How a candidate is built: candidates.Candidate.to_dict()."""
    id: str
    backend: str  # onnxruntime | openvino
    precision: str  # fp32, bf16, int8
    command: tuple[str, ...]  # the distilbert-deploy command's arguments; empty: the fp32 source itself
    cls_pruned: bool  # built from the [CLS]-pruned fp32 export
    static_buckets: tuple[int, ...] | None  # an OpenVINO static variant's sequence buckets; None: dynamic shapes
    why: str


@dataclass(frozen=True)
class Row:
    """A candidate recipe, a peer or a baseline in the run (selection.py's record)."""
    id: str
    kind: str  # candidate, peer or baseline
    status: str  # candidates: source, built, reused, crashed, left-out; peers and baselines: timed, skipped
    ci: bool | None  # the parity verdict on the ci corpus; None: not judged
    reason: str  # why it failed, crashed, was left out or not timed; "" when there is nothing to say
    p50: dict[str, float]  # workload -> ms in the interleaved run; {} when not timed
    p99: dict[str, float]
    # candidates only (None for peers and baselines):
    recipe: Recipe | None
    full: bool | None  # the parity verdict on the full held-out corpus (finalists); None: not judged
    build_s: float | None
    build_note: str | None
    path: str | None  # the built artifact


@dataclass(frozen=True)
class PeerRatio:
    id: str
    p50_ms: float
    ratio: float  # the peer's p50 / the winner's


@dataclass(frozen=True)
class Selection:
    """selection.select(): the winner and how it compares."""
    rank: str  # the workload the candidates are ranked on
    winner: str
    runner_up: str | None
    ratio_to_runner_up: float | None  # runner-up p50 / winner p50 on rank
    best_peer: dict[str, PeerRatio]  # workload -> the fastest peer
    best_passing_peer: dict[str, PeerRatio]  # workload -> the fastest peer that passed parity on the ci corpus
    vs_baseline: dict[str, float]  # workload -> PyTorch eager fp32 p50 / winner p50
    losers: dict[str, str]  # candidate id -> why it lost


@dataclass(frozen=True)
class SpeedTarget:
    """One of the issue's speed targets judged on this run (selection.targets())."""
    target: str
    value: float | None  # the ratio judged; None when nothing was timed to judge it
    limit: float
    passed: bool | None
    detail: str
    workload: str | None  # None for the target against PyTorch
    peers: str | None  # against which peers: all, passing; None for the target against PyTorch


@dataclass(frozen=True)
class OpTime:
    op: str  # operator type (OpenVINO: with its kernel), or "other"
    us: float  # µs a call
    share: float  # of the profiled call's operator time


@dataclass(frozen=True)
class Profiled:
    """One model profiled at a workload's mean shape (profiles.profile())."""
    id: str
    shape: str  # BATCHxSEQ asked for
    ran_at: str  # BATCHxSEQ it ran at (a static IR's bucket)
    tool: str
    calls: int
    node_us: float  # operators' µs a call
    profiled_wall_us: float  # the call's µs with the profiler on
    gemm_share: float  # of the operator time, in matrix multiplies
    ops: tuple[OpTime, ...]
    wall_us: float | None  # the call's µs with the profiler off, side by side with the others


@dataclass(frozen=True)
class NotProfiled:
    id: str
    error: str  # why it was not profiled
    shape: str | None


@dataclass(frozen=True)
class Profile:
    """The winner and the best peer(s) profiled on a workload where a target against the peers was missed."""
    workload: str
    shape: str  # BATCHxSEQ: the workload's mean padded call
    targets: tuple[Profiled | NotProfiled, ...]
    reading: str  # profiles.summary_line(); "" when there is no pair to compare


@dataclass(frozen=True)
class Bench:
    """What the interleaved bench run recorded."""
    environment: dict  # benchmarks.bench.env.capture()
    method: dict  # the bench report's method (timer, warmup, stopping, interleaving, ...)
    workloads: dict[str, str]  # workload -> its description ("" for a fixed shape)


@dataclass(frozen=True)
class SelectionReport:
    FILE: ClassVar[str] = "selection.json"
    MADE_BY: ClassVar[str] = "make optimize"
    # 1: the first versioned file. Files written before it have no schema_version and leave out the keys the run's
    # records leave out (see _complete); upgrade_unversioned reads them as version 1.
    SCHEMA_VERSION: ClassVar[int] = 1
    selected_by: str  # "measurement"
    created: str
    command: str
    source: str  # the fp32 export optimized
    out: str  # where the winner was written
    task: str
    model: str | None
    cpu: dict  # model, class (a Python keyword, so no dataclass field), flags (the ones set), logical_cpus
    rank: str
    workloads: tuple[str, ...]
    budget_s: float | None
    seconds: float
    winner: str
    winner_recipe: Recipe
    selection: Selection
    targets: tuple[SpeedTarget, ...]
    candidates: tuple[Row, ...]  # candidates first, then peers and baselines
    bench: Bench
    profiles: tuple[Profile, ...]
    schema_version: int = SCHEMA_VERSION


_NOT_A_CANDIDATE = {"ci": None, "reason": "", "recipe": None, "full": None, "build_s": None, "build_note": None,
                    "path": None}  # what a peer's or a baseline's record leaves out


def _complete(d: dict) -> dict:
    """The optimize result (or a file written before version 1) with the keys its records may leave out: a peer's
    or baseline's candidate-only fields, its verdict and reason; a target's workload and peers (the target against
    PyTorch has neither); a profile's wall_us, an unprofiled target's shape; the profiles (added later) as []."""
    def each(rows, fill):
        return [fill(r) if isinstance(r, dict) else r for r in rows] if isinstance(rows, list) else rows

    def profile(e):
        return {**e, "targets": each(e.get("targets"), lambda p: {"shape": None, **p} if "error" in p
                                     else {"wall_us": None, **p})}

    return {**d, "candidates": each(d.get("candidates"), lambda r: r if r.get("kind") == "candidate"
                                    else {**_NOT_A_CANDIDATE, **r}),
            "targets": each(d.get("targets"), lambda t: {"workload": None, "peers": None, **t}),
            "profiles": each(d.get("profiles", []), profile)}


def upgrade_unversioned(doc):
    """A report document written before version 1 (no schema_version) as version 1 (a new dict; anything else is
    returned as it is)."""
    if not isinstance(doc, dict) or "schema_version" in doc:
        return doc
    return {"schema_version": 1, **_complete(doc)}


def from_result(result: dict) -> SelectionReport:
    """The typed report of an optimize run's result (run.summary() with its profiles)."""
    return parse(SelectionReport, {**_complete(result), "schema_version": SelectionReport.SCHEMA_VERSION},
                 "the optimize result")


def read_report(doc, where: str = SelectionReport.FILE) -> SelectionReport:
    return parse(SelectionReport, upgrade_unversioned(doc), where)


def _ms(x) -> str:
    return "–" if x is None else (f"{x:.3g}" if x < 10 else f"{x:.1f}")


def _verdict(v) -> str:
    return {True: "pass", False: "**fail**", None: "–"}[v]


def _ratios(by_workload: dict[str, PeerRatio]) -> str:
    return "; ".join(f"{w}: {v.ratio:.2f}x ({v.id})" for w, v in by_workload.items())


def to_markdown(doc: dict) -> str:
    d = read_report(doc)
    sel, cpu, ws = d.selection, d.cpu, d.workloads
    win = next(r for r in d.candidates if r.id == d.winner)
    base = next((r for r in d.candidates if r.id == "torch-eager-fp32"), None)
    L = [f"# Selection: `{d.model}` {d.task} on {cpu['model']} ({cpu['class']})", "",
         f"Created {d.created} by `{d.command}` in {d.seconds:.0f} s"
         + (f" (budget {d.budget_s:g} s)" if d.budget_s else "") + ".", "",
         f"- **CPU class**: {CPU_CLASS_NAMES.get(cpu['class'], cpu['class'])}; {cpu.get('logical_cpus')} logical CPUs; "
         f"flags: {', '.join(cpu['flags'])}",
         f"- **Winner**: `{d.winner}`: {win.recipe.why}; selected by measurement, ranked by `{d.rank}` (p50)",
         "- **Runner-up**: " + (f"`{sel.runner_up}`, {sel.ratio_to_runner_up:.2f}x slower"
                                if sel.runner_up else "none passed both corpora"),
         "- **Against the best peer** (best peer p50 / winner p50): " + _ratios(sel.best_peer),
         "- **Against the best peer that passes parity**: " + (_ratios(sel.best_passing_peer) or
                                                               "no peer passed (or none was judged)"),
         "- **Against PyTorch eager fp32**: " + "; ".join(f"{w}: {v:.2f}x" for w, v in sel.vs_baseline.items()),
         "", "## Targets", "", "| target | value | limit | verdict | detail |", "|---|---|---|---|---|"]
    for t in d.targets:
        v = "–" if t.value is None else f"{t.value:.2f}x"
        L.append(f"| {t.target} | {v} | {t.limit:g}x | {_verdict(t.passed)} | {t.detail} |")
    L += _profiles_section(d.profiles)
    L += ["", "## Every target, one interleaved run", "",
          "p50 ms (p99 in brackets) per workload; parity on the ci corpus (screen) and the full held-out corpus "
          "(finalists).", "",
          "| target | kind | parity ci | parity full | " + " | ".join(f"`{w}`" for w in ws) + " | result |",
          "|---|---|---|---|" + "---|" * len(ws) + "---|"]
    for r in d.candidates:
        cells = [f"{_ms(r.p50[w])} ({_ms(r.p99.get(w))})" if r.p50.get(w) is not None else "–" for w in ws]
        if r.id == d.winner:
            why = "**winner**"
        elif r.kind == "candidate":
            why = sel.losers.get(r.id, "")
        elif r.status == "skipped":
            why = f"not timed: {r.reason}"
        else:
            p, w0 = r.p50.get(d.rank), win.p50.get(d.rank)
            why = f"{w0 / p:.2f}x the winner's speed on {d.rank}" if p and w0 else ""
            if r.ci is False:
                why += f"; fails parity: {r.reason}"
        name = f"**{r.id}**" if r.id == d.winner else r.id
        L.append(f"| {name} | {r.kind} | {_verdict(r.ci) if r.kind != 'baseline' else ''} | "
                 f"{_verdict(r.full) if r.kind == 'candidate' else ''} | " + " | ".join(cells) + f" | {why} |")
    L += ["", "## Method", ""]
    for w, desc in d.bench.workloads.items():
        L.append(f"- `{w}`: {desc or 'a fixed shape: seeded random ids, every token real'}")
    m = d.bench.method
    L += [f"- timing: {m.get('timer')}; {m.get('stopping')}; {m.get('interleaving')}",
          "- peers: plain `nncf.quantize` defaults (peer-ov-nncf), plain `quantize_dynamic(weight_type=QInt8)` "
          "(peer-ort-qdynamic), optimum's ORTQuantizer preset for this CPU (peer-optimum-ortq), torch.compile "
          "(torch-compile-fp32); PyTorch eager fp32 is the baseline.",
          "- parity: the parity suite's corpora, tolerances and verdict rules (`distilbert-deploy parity`); a "
          "candidate that crashed or failed is never selected.", ""]
    if base is None:
        L.append("PyTorch eager fp32 was not timed in this run.")
    return "\n".join(L) + "\n"


def _profiles_section(profiles: tuple[Profile, ...]) -> list[str]:
    if not profiles:
        return []
    L = ["", "## Where the time goes, on the workloads where a target was missed", "",
         "The winner and the best peer, each profiled alone at the workload's mean padded shape (seeded random ids, "
         "every token real) as our runtime runs it: a bucketed IR at its bucket, OpenVINO at the artifact's "
         "inference precision (`benchmarks/optimize/profiles.py`). The call is timed with the profiler off, side by "
         "side; the operators' µs a call come from the profiler, whose own cost differs by tool (ONNX Runtime's "
         "adds several µs a node), so compare shares within a row, and calls across rows.", ""]
    for e in profiles:
        L += [f"**`{e.workload}`** at {e.shape}" + (f": {e.reading}" if e.reading else ""), "",
              "| target | call µs | tool | ran at | operators µs (profiled call µs) | matrix multiplies | largest "
              "operators, µs (share) |", "|---|---|---|---|---|---|---|"]
        for p in e.targets:
            if isinstance(p, NotProfiled):
                L.append(f"| {p.id} | – | – | – | – | – | not profiled: {p.error} |")
                continue
            ops = "; ".join(f"{o.op} {o.us:.0f} ({o.share:.0%})" for o in p.ops)
            call = f"{p.wall_us:.0f}" if p.wall_us is not None else "–"
            L.append(f"| {p.id} | {call} | {p.tool} | {p.ran_at} | {p.node_us:.0f} ({p.profiled_wall_us:.0f}) | "
                     f"{p.gemm_share:.0%} | {ops} |")
        L.append("")
    return L[:-1]


def plot(d: SelectionReport, path: Path) -> bool:
    """p50 per workload, one panel each; False (nothing drawn) when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return False
    ws = d.workloads
    rows = [r for r in d.candidates if r.p50]
    fig, axes = plt.subplots(1, len(ws), figsize=(4.2 * len(ws), 0.32 * len(rows) + 1.6), squeeze=False)
    colors = {"candidate": "#9aa5b1", "peer": "#e8a23a", "baseline": "#4a78b5"}
    for ax, w in zip(axes[0], ws):
        rs = sorted([r for r in rows if r.p50.get(w) is not None], key=lambda r: r.p50[w], reverse=True)
        ax.barh([r.id for r in rs], [r.p50[w] for r in rs],
                color=["#2e9e5b" if r.id == d.winner else colors.get(r.kind, "#999") for r in rs])
        ax.set_title(w, fontsize=9)
        ax.set_xlabel("p50 ms")
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{d.task} on {d.cpu['model']} ({d.cpu['class']}): winner {d.winner} (green), peers "
                 f"(orange), PyTorch (blue)", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
    return True


def write_all(result: dict, out: Path) -> dict[str, Path]:
    """selection.json and selection.md (write_report: atomic, the Markdown rendered first), then selection.png."""
    report = from_result(result)
    paths = write_report(report, Path(out), to_markdown, indent=2)
    png = Path(out) / "selection.png"
    if plot(report, png):
        paths["png"] = png
    return paths
