"""Command line of the bench harness: `distilbert-deploy bench {run,render,compare}` and
`distilbert-deploy compare OLD.json NEW.json`.
Exit codes: 0 ok; 1 compare found a regression; 2 bad input or a backend asked for that cannot run here."""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path


from benchmarks.bench.config import BASELINES, LAUNCHERS, PEERS, SCENARIOS, TIMINGS, BenchConfig, quick


def _shape(s: str) -> tuple[int, int]:
    try:
        b, q = (int(x) for x in s.lower().split("x"))
        return b, q
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not BATCHxSEQUENCE (e.g. 1x128)") from None


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a comma-separated list of integers") from None


def _list(values: list[str]) -> list[str]:
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=Path, nargs="*",
                   help="artifact directories (default: artifacts/MODEL/TASK/onnxruntime-fp32)")
    p.add_argument("--model", default="default", help="for the default artifact path")
    p.add_argument("--task", default="text-classification", help="for the default artifact path")
    p.add_argument("--scenario", action="append", default=[],
                   help=f"{', '.join(SCENARIOS)} or all (repeatable or comma-separated; default all)")
    p.add_argument("--baseline", action="append", default=[],
                   help=f"PyTorch baselines: {', '.join(BASELINES)}, or none (naming one makes it required)")
    p.add_argument("--peer", action="append", default=[],
                   help=f"peers: {', '.join(PEERS)}, or none (default: all, skipped where not installed; naming "
                        f"one makes it required)")
    p.add_argument("--launcher", default="inprocess", choices=LAUNCHERS)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, help="intra-op threads for every target (default: each backend's own)")
    p.add_argument("--timing", default="auto", choices=TIMINGS,
                   help="CUDA: end-to-end (host<->device copies timed) or device (CUDA events, torch only)")
    p.add_argument("--quick", action="store_true", help="tiny shapes and counts (CI smoke test)")
    p.add_argument("--warmup", type=int)
    p.add_argument("--min-time", type=float, help="seconds of timed calls per target and workload")
    p.add_argument("--settle-ms", type=float, help="idle ms before a turn that follows another target's (default 50)")
    p.add_argument("--min-iters", type=int, help="timed calls per target and workload")
    p.add_argument("--latency-shape", type=_shape, help="BATCHxSEQ (default 1x128)")
    p.add_argument("--sweep-batches", type=_ints, help="e.g. 1,4,16")
    p.add_argument("--sweep-sequences", type=_ints, help="e.g. 32,128")
    p.add_argument("--throughput-shape", type=_shape, help="BATCHxSEQ (default 32x128)")
    p.add_argument("--realtext-size", type=int, help="tweets (default 128)")
    p.add_argument("--realtext-batch", type=int, help="tweets per request (default 8)")
    p.add_argument("--realtext-unsorted", action="store_true",
                   help="form requests in corpus order (default: tweets sorted by length, as the task layer does)")
    p.add_argument("--realtext-split", choices=["heldout", "train"])
    p.add_argument("--coldstart-runs", type=int)
    p.add_argument("--workload", action="append", default=[],
                   help="select scenario: tweets-bsN, BxS or file:PATH[@N] (repeatable or comma-separated)")
    p.add_argument("--optimum-python", type=Path, help="interpreter of the optimum venv (default .venv-optimum)")
    p.add_argument("--parity", default="reports/parity.json", help="parity report for accuracy, or none")
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--name", default="bench", help="writes OUT/NAME.{json,md,png}")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--cmdline", help=argparse.SUPPRESS)  # the command recorded in the report (make bench sets it)


def _command() -> str:
    return shlex.join(["distilbert-deploy", *sys.argv[1:]])


def config_from_args(a) -> BenchConfig:
    arts = tuple(a.artifact) or (Path("artifacts") / a.model / a.task / "onnxruntime-fp32",)
    scen = _list(a.scenario) or ["all"]
    scen = list(SCENARIOS[:-1]) if "all" in scen else scen  # all: but select
    base, peers = _list(a.baseline), _list(a.peer)
    explicit = tuple(x for x in base if x != "none") + tuple(x for x in peers if x != "none")
    kw = dict(artifacts=arts, scenarios=tuple(scen), explicit=explicit, launcher=a.launcher, device=a.device,
              threads=a.threads, timing=a.timing, out=a.out, name=a.name,
              parity_report=None if a.parity == "none" else Path(a.parity),
              command=a.cmdline or _command())
    if base:
        kw["baselines"] = tuple(x for x in base if x != "none")
    if peers:
        kw["peers"] = tuple(x for x in peers if x != "none")
    if a.workload:
        kw["select_workloads"] = tuple(_list(a.workload))
    if a.realtext_unsorted:
        kw["realtext_sort"] = False
    if a.optimum_python:
        kw["optimum_python"] = a.optimum_python
    over = {k: v for k, v in dict(warmup=a.warmup, min_time_s=a.min_time, min_iters=a.min_iters,
                                  settle_s=None if a.settle_ms is None else a.settle_ms / 1e3,
                                  latency_shape=a.latency_shape, sweep_batches=a.sweep_batches,
                                  sweep_sequences=a.sweep_sequences, throughput_shape=a.throughput_shape,
                                  realtext_size=a.realtext_size, realtext_batch=a.realtext_batch,
                                  realtext_split=a.realtext_split, coldstart_runs=a.coldstart_runs).items()
            if v is not None}
    cfg = BenchConfig(**kw)
    if a.quick:
        keep = {**over, **({"baselines": kw["baselines"]} if "baselines" in kw else {})}
        return quick(cfg, **keep)
    return replace(cfg, **over) if over else cfg


def cmd_run(a) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from benchmarks.bench.core import run_bench
    from benchmarks.bench.render import write_all

    cfg = config_from_args(a)
    console = Console(stderr=True)
    log = (lambda msg: console.print(f"[dim]{msg}[/dim]"))
    if a.no_progress:
        rep = run_bench(cfg, None, log)
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            rep = run_bench(cfg, progress, lambda msg: progress.console.print(f"[dim]{msg}[/dim]"))
    d = rep.to_dict()
    paths = write_all(d, cfg.out, cfg.name)
    from benchmarks.bench.render import to_markdown

    print(to_markdown(d))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_render(a) -> int:
    from benchmarks.bench.render import render

    paths = render(a.report, a.out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_compare(a) -> int:
    from benchmarks.bench.compare import compare, to_markdown
    from benchmarks.bench.report import load_report
    from benchmarks.report_io import write_atomic

    old, new = load_report(a.old), load_report(a.new)
    rows, warnings = compare(old, new, alpha=a.alpha)
    md = to_markdown(rows, warnings, str(a.old), str(a.new))
    if a.out:
        write_atomic(Path(a.out), md.encode())
    print(md)
    return 1 if any(r.change and r.change.verdict == "regression" for r in rows) else 0


def add_compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", type=Path, help="the earlier bench.json")
    p.add_argument("new", type=Path, help="the later bench.json")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level (default 0.01)")
    p.add_argument("--out", type=Path, help="also write the Markdown here")
    p.set_defaults(run=cmd_compare)


def add_parsers(sub) -> None:
    """For distilbert_deploy.cli: `bench [run|render|compare]` and a top-level `compare`."""
    b = sub.add_parser("bench", help="latency benchmark: artifacts vs PyTorch baselines and peers; render; compare",
                       description=__doc__)
    bs = b.add_subparsers(metavar="ACTION")
    r = bs.add_parser("run", help="run a benchmark")
    add_run_args(r)
    r.set_defaults(run=cmd_run)
    n = bs.add_parser("render", help="re-render REPORT.json's Markdown and PNG")
    n.add_argument("report", type=Path)
    n.add_argument("--out", type=Path, help="directory (default: beside the report)")
    n.set_defaults(run=cmd_render)
    add_compare_args(bs.add_parser("compare", help="flag regressions of NEW against OLD beyond measured noise"))
    b.set_defaults(run=lambda a: (b.print_help(), 2)[1])
    add_compare_args(sub.add_parser("compare", help="flag benchmark regressions of NEW.json against OLD.json "
                                                    "beyond the measured noise (exit 1 on a regression)"))

