"""`distilbert-deploy parity`: progress on stderr, parity.json + parity.md, exit 0 pass / 1 fail."""
from __future__ import annotations

from benchmarks.parity.report import fmt, write
from benchmarks.parity.runner import HOST, ParityConfig, default_artifacts, run_parity


def _listed(values: list[str]) -> tuple[str, ...]:
    return tuple(v.strip() for x in values for v in x.split(",") if v.strip())


def run(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from runtimes.progress import console

    precisions = _listed(args.precision)
    cfg = ParityConfig(artifacts=tuple(args.artifact) or default_artifacts(args.artifacts), corpus=args.corpus,
                       precisions=precisions, tol=tuple(args.tol), cases=tuple(args.case), device=args.device,
                       write_manifest=not args.no_manifest, platforms=_listed(args.platform) or (HOST,))
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=console()) as progress:
        report = run_parity(cfg, progress)
    js, md = write(report, args.out)
    for t in report.targets:
        judged = [c for c in t.checks if c.passed is not None]
        bad = [c for c in judged if not c.passed]
        line = ", ".join(f"{c.name} {fmt(c.value)}" for c in (bad or judged)[:4])
        print(f"{'PASS' if t.passed else 'FAIL'} {t.id} {t.artifact}: {line}")
        if not t.passed:
            for f in t.failures[:3]:
                print(f"    case {f.case}: {f.check}: {f.detail}\n      reproduce: {f.repro}")
            print(f"    reproduce the target: {t.repro}")
    print(f"{'PASSED' if report else 'FAILED'}: {sum(t.passed for t in report.targets)}/{len(report.targets)} "
          f"targets; wrote {js} and {md}")
    return 0 if report else 1
