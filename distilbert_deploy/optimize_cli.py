"""`distilbert-deploy optimize SRC --out DIR`: exit 0 with the winner written; 2 on bad input (a source that is not an
fp32 export, an unknown workload, an impossible budget) or when no candidate passes parity (DIR is not written)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _list(values: list[str]) -> tuple[str, ...]:
    return tuple(x.strip() for v in values for x in v.split(",") if x.strip())


def add_parser(sub) -> None:
    from benchmarks.bench.config import DEFAULT_OPTIMUM_PYTHON

    o = sub.add_parser("optimize", help="build every recipe that runs on this CPU, judge each with the parity suite, "
                                        "time them side by side with the peers, keep the fastest that passes",
                       description=__doc__)
    o.add_argument("src", type=Path, help="the fp32 ONNX export (distilbert-deploy export)")
    o.add_argument("--out", type=Path, required=True, help="where the winning artifact is written")
    o.add_argument("--workload", action="append", default=[],
                   help="tweets-bsN, BxS or file:PATH[@N] (repeatable or comma-separated; default "
                        "tweets-bs1,tweets-bs16,1x128,8x128)")
    o.add_argument("--rank", default="tweets-bs1", help="the workload the winner is fastest on (default tweets-bs1)")
    o.add_argument("--budget-s", type=float, help="time budget in seconds; the likeliest winners are built first")
    o.add_argument("--report", type=Path, help="report directory (default reports/optimize/MODEL/TASK)")
    o.add_argument("--peer", action="append", default=[], help="peers: ort-qdynamic, ov-nncf, optimum-ortq, or none")
    o.add_argument("--baseline", action="append", default=[], help="torch-eager-fp32, torch-compile-fp32, or none")
    o.add_argument("--only", action="append", default=[], help="consider only these candidate ids")
    o.add_argument("--min-time", type=float, default=1.0, help="timed seconds per target and workload")
    o.add_argument("--finalists", type=int, default=3, help="candidates judged on the full corpus at a time")
    o.add_argument("--cls-top", type=int, default=2, help="recipes that get a [CLS]-pruned variant")
    o.add_argument("--optimum-python", type=Path, default=Path(DEFAULT_OPTIMUM_PYTHON),
                   help="interpreter of the optimum venv (default .venv-optimum)")
    o.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # tiny timing counts (tests)
    o.add_argument("--cmdline", help=argparse.SUPPRESS)
    o.set_defaults(run=cmd_optimize)


def config_from_args(a):
    from benchmarks.optimize.run import BASELINES, PEERS, OptimizeConfig

    peers, base = _list(a.peer), _list(a.baseline)
    kw = {}
    if a.workload:
        kw["workloads"] = _list(a.workload)
    return OptimizeConfig(src=a.src, out=a.out, rank=a.rank, budget_s=a.budget_s, report_dir=a.report,
                          peers=tuple(p for p in peers if p != "none") if peers else PEERS,
                          baselines=tuple(b for b in base if b != "none") if base else BASELINES,
                          only=_list(a.only), min_time_s=a.min_time, finalists=a.finalists, cls_top=a.cls_top,
                          quick=a.quick, optimum_python=a.optimum_python,
                          command=a.cmdline or shlex.join(["distilbert-deploy", *sys.argv[1:]]), **kw)


def cmd_optimize(a) -> int:
    from rich.console import Console

    from benchmarks.optimize.run import optimize

    cfg = config_from_args(a)
    console = Console(stderr=True)
    d = optimize(cfg, lambda m: console.print(f"[dim]{m}[/dim]"))
    print(headline(d))
    print("report: " + ", ".join(d["report_files"].values()))
    return 0


def headline(d: dict) -> str:
    sel = d["selection"]
    win = next(r for r in d["candidates"] if r["id"] == d["winner"])
    lines = [f"winner on {d['cpu']['model']} ({d['cpu']['class']}): {d['winner']} -> {d['out']}",
             f"  ranked by {d['rank']}: p50 {win['p50'][d['rank']]:.2f} ms"
             + (f"; runner-up {sel['runner_up']} {sel['ratio_to_runner_up']:.2f}x slower" if sel["runner_up"] else "")]
    for w in d["workloads"]:
        bp, vb = sel["best_peer"].get(w), sel["vs_baseline"].get(w)
        lines.append(f"  {w}: {win['p50'][w]:.2f} ms" + (f", {vb:.2f}x PyTorch fp32" if vb else "")
                     + (f", {bp['ratio']:.2f}x the best peer ({bp['id']})" if bp else ""))
    return "\n".join(lines)
