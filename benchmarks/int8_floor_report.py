"""The INT8 floor report (int8-floor.json, written by benchmarks/int8_floor.py): its typed schema, the upgrade of
the version-3 reports committed under docs/int8-floor/, and the Markdown rendered from it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from benchmarks.report_io import ReportError, parse
from runtimes.hardware import isa_text

CLS_PRUNING = {  # how the -cls candidates of a run were built (docs/int8-floor/README.md: run1-run4 are "rows")
    "rows": "skip the last layer's non-[CLS] rows, which the head never reads",
    "reassociated": "compute only the [CLS] row of the last layer, the only row the head reads, with no K/V "
                    "projection of the tokens"}


@dataclass(frozen=True)
class CandidateResult:
    name: str
    kind: str  # reference | peer | project
    what: str  # how it was built and run
    best_ms: float
    median_ms: float
    pct_of_floor: float  # the floor (full model FLOPs at the peak) / best_ms
    executed_gflop: float  # what the candidate really runs: fewer for a [CLS]-pruned last layer
    pct_of_peak_executed: float  # executed_gflop / best_ms as a share of the INT8 peak
    vs_eager: float  # speed-up over pytorch-eager-fp32 (best against best)
    vs_plain_nncf: float  # speed-up over plain-nncf-int8
    samples_ms: list[float]  # every timed call, in order


@dataclass(frozen=True)
class LayerTime:
    layer_type: str  # "node type (kernel)"
    ms: float
    count: int


@dataclass(frozen=True)
class GemmTime:
    role: str  # q_lin ... lin2, pre_classifier, classifier, or "unnamed" (renamed by OpenVINO's fusing)
    count: int
    ms: float
    gflop: float  # from the compiled model's shapes
    gops: float | None  # None when the nodes took no measurable time


@dataclass(frozen=True)
class Profile:
    artifact: str
    shape: str  # BATCHxSEQ
    total_ms: float  # the best of the profiled runs
    rows: list[LayerTime]  # slowest first
    gemms: list[GemmTime] | None  # None: profiled before the per-role GEMM table (version 3)


@dataclass(frozen=True)
class ShapeResult:
    shape: str  # BATCHxSEQ
    gflop: float  # the full model's encoder FLOPs at this shape
    peak_gops: float  # best-of-N torch._int_mm, the best of the model's GEMM shapes, at the run's thread count
    peak_gops_by_shape: dict[str, float]  # MxKxN -> GOPS
    peak_gops_1_thread: float
    floor_ms: float  # gflop at peak_gops
    rows: list[CandidateResult]
    fastest_project: str  # the name of the fastest row of kind project
    profile: Profile | None = None  # the fastest OpenVINO candidate; None with --no-profile


@dataclass(frozen=True)
class Int8FloorReport:
    FILE: ClassVar[str] = "int8-floor.json"
    MADE_BY: ClassVar[str] = "python -m benchmarks.int8_floor"
    # 2: cpu is runtimes.hardware.cpu_info() (flags as a dict); 3: executed GFLOP per candidate; 4: cls_pruning
    # names the -cls recipe the run measured, and every profile has gemms. upgrade_from_3 reads a version-3 file
    # as version 4: cls_pruning absent meant "reassociated", a profile without gemms has gemms null.
    SCHEMA_VERSION: ClassVar[int] = 4
    # (lists, not tuples: report_io.write_report re-parses dataclasses.asdict(), which keeps tuples, as JSON)
    cls_pruning: str  # a key of CLS_PRUNING
    model: str
    task: str
    threads: int
    timer: str
    rounds: int
    iters: int  # calls per candidate per round
    cpu: dict  # runtimes.hardware.cpu_info()
    versions: dict[str, str]  # library versions
    shapes: list[ShapeResult]
    schema_version: int = SCHEMA_VERSION


def upgrade_from_3(doc):
    """A version-3 report document as version 4 (a new dict; anything else is returned as it is)."""
    if not isinstance(doc, dict) or doc.get("schema_version") != 3:
        return doc
    shapes = doc.get("shapes")
    if isinstance(shapes, list):
        shapes = [{**s, "profile": {"gemms": None, **s["profile"]}}
                  if isinstance(s, dict) and isinstance(s.get("profile"), dict) else s for s in shapes]
    return {**doc, "schema_version": 4, "cls_pruning": doc.get("cls_pruning", "reassociated"), "shapes": shapes}


def read_report(doc, where: str = Int8FloorReport.FILE) -> Int8FloorReport:
    """The typed report from its JSON document (version 3 or 4); a malformed one is a ReportError."""
    report = parse(Int8FloorReport, upgrade_from_3(doc), where)
    if report.cls_pruning not in CLS_PRUNING:
        raise ReportError(f"{where}: malformed {Int8FloorReport.FILE} (Int8FloorReport.cls_pruning: "
                          f"{report.cls_pruning!r} is none of {', '.join(CLS_PRUNING)}). Fix: re-run "
                          f"`{Int8FloorReport.MADE_BY}`")
    return report


def render(doc: dict) -> str:
    """Markdown from the JSON report (a pure function: old reports re-render the same)."""
    r = read_report(doc)
    out = [f"# INT8 floor benchmark: {r.model} {r.task}", "",
           f"CPU {r.cpu['model']} ({r.cpu['logical_cpus']} logical CPUs; ISA: {isa_text(r.cpu)}), {r.threads} "
           f"threads. Timer: {r.timer}. {r.rounds} interleaved rounds x {r.iters} calls per candidate, one process.", ""]
    for s in r.shapes:
        out += [f"## bs{s.shape}", "",
                f"{s.gflop:.2f} GFLOP. INT8 GEMM peak (best-of-N torch._int_mm, {r.threads} threads, best of the "
                f"model's GEMM shapes): **{s.peak_gops:.0f} GOPS** (1 thread: {s.peak_gops_1_thread:.0f}). "
                f"Floor: **{s.floor_ms:.2f} ms**.", "",
                "`% of floor` divides the floor (the full model's FLOPs at the peak) by the best latency. `-cls` "
                f"candidates {CLS_PRUNING[r.cls_pruning]} (same answers: parity judges them), so they run fewer "
                "FLOPs; `% of peak` is their GEMM rate on the FLOPs they do run.", "",
                "| candidate | kind | best ms | median ms | % of floor (best) | GFLOP run | % of peak on them | "
                "x eager fp32 | x plain nncf |", "|---|---|---|---|---|---|---|---|---|"]
        for c in sorted(s.rows, key=lambda c: c.best_ms):
            bold = "**" if c.name == s.fastest_project else ""
            out.append(f"| {bold}{c.name}{bold} | {c.kind} | {c.best_ms:.2f} | {c.median_ms:.2f} | "
                       f"{c.pct_of_floor:.1f}% | {c.executed_gflop:.2f} | {c.pct_of_peak_executed:.1f}% | "
                       f"{c.vs_eager:.2f} | {c.vs_plain_nncf:.2f} |")
        out += ["", "GEMM peak by shape (GOPS): " + ", ".join(f"{k} {v:.0f}" for k, v in s.peak_gops_by_shape.items())]
        if prof := s.profile:
            out += ["", f"Per-layer profile of {Path(prof.artifact).name} at {prof.shape} (OpenVINO PERF_COUNT, "
                        f"best of 10, total {prof.total_ms:.2f} ms):", "", "| layer type (kernel) | count | ms |",
                    "|---|---|---|"]
            out += [f"| {t.layer_type} | {t.count} | {t.ms:.2f} |" for t in prof.rows[:12]]
            if prof.gemms:
                out += ["", "Its GEMMs by role (FLOPs from the compiled model's shapes; % of the INT8 peak above):", "",
                        "| GEMM | count | ms | GFLOP | GOPS | % of peak |", "|---|---|---|---|---|---|"]
                out += [f"| {g.role} | {g.count} | {g.ms:.2f} | {g.gflop:.3f} | {g.gops or 0:.0f} | "
                        f"{100 * (g.gops or 0) / s.peak_gops:.0f}% |" for g in prof.gemms]
        out.append("")
    return "\n".join(out)
