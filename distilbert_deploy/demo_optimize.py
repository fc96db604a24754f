"""The second half of `make demo`: `distilbert-deploy optimize` on the default text-classifier within a time
budget, then the winner's accuracy against PyTorch fp32 (the parity suite on the 2,000 held-out tweets), its
speed-up over PyTorch fp32 and over the best peer (one interleaved run) and its size. Everything printed comes
from the selection report it writes (reports/demo/selection.*)."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from rich.console import Console

# Fits a fresh-machine demo in 6 minutes on the slowest class seen (2-core AVX2 AMD EPYC): the plan scales its cost
# estimates by CPU class (benchmarks/optimize/candidates.COST_SCALE), so slower CPUs build fewer recipes.
BUDGET_S = 200
WORKLOADS = ("tweets-bs1", "1x128")
PEERS = ("ort-qdynamic", "ov-nncf")  # in the main venv; optimum's peer needs `make venv-optimum`
MIN_TIME_S = 0.5


def run(out: Console, fp32_onnx: Path, reports: Path, budget_s: float = BUDGET_S) -> Path:
    from benchmarks.bench.runners import files_size
    from benchmarks.optimize.run import OptimizeConfig, optimize
    from runtimes.artifact import read_manifest
    from runtimes.hardware import CPU_CLASS_NAMES

    if importlib.util.find_spec("nncf"):  # its per-node INFO lines are for `quantize`, not the demo
        import nncf  # sets its own level on import, so after it

        nncf.set_log_level(logging.WARNING)
    dest = fp32_onnx.parent / "optimized"
    out.rule(f"optimize · every recipe that runs on this CPU, judged and timed (budget {budget_s:.0f} s)")
    cfg = OptimizeConfig(src=fp32_onnx, out=dest, workloads=WORKLOADS, budget_s=budget_s, report_dir=reports,
                         peers=PEERS, baselines=("torch-eager-fp32",), min_time_s=MIN_TIME_S, finalists=1,
                         command="make demo")
    d = optimize(cfg, lambda m: out.print(f"[dim]{m}[/dim]"))
    sel, cpu = d["selection"], d["cpu"]
    win = next(r for r in d["candidates"] if r["id"] == d["winner"])
    suite = read_manifest(dest).parity.get("suite", {}).get("runs", {})
    checks = next(iter(suite.values()), {}).get("checks", {})
    out.rule(f"winner on {cpu['model']}: {CPU_CLASS_NAMES.get(cpu['class'], cpu['class'])}")
    from benchmarks.optimize.selection import ranked

    others = [r for r in ranked(d["candidates"], d["rank"]) if r["id"] != d["winner"]]
    out.print(f"winner: [bold]{d['winner']}[/] ({win['recipe']['why']})" + (
        f"; next fastest that passed the ci screen: {others[0]['id']}, "
        f"{others[0]['p50'][d['rank']] / win['p50'][d['rank']]:.2f}x slower" if others else ""))
    acc, agree = checks.get("accuracy_delta", {}), checks.get("label_agreement", {})
    if acc:
        out.print(f"accuracy: {acc['value'] * 100:+.1f} pt vs PyTorch fp32 on the 2,000 held-out tweets; labels agree "
                  f"on {agree.get('value', float('nan')):.1%} of decisive tweets; parity [green]PASS[/]")
    verdict = {r["id"]: r.get("ci") for r in d["candidates"]}
    for w in d["workloads"]:
        bp, vb = sel["best_peer"].get(w), sel["vs_baseline"].get(w)
        peer = (f", {bp['ratio']:.2f}x the best peer ({bp['id']}" + (", which fails parity" if verdict.get(bp["id"])
                                                                     is False else "") + ")") if bp else ""
        out.print(f"speed-up at {w}: {vb:.1f}x PyTorch fp32{peer}  (p50 {win['p50'][w]:.2f} ms)")
    built = sum(1 for r in d["candidates"] if r["kind"] == "candidate" and r.get("status") != "left-out")
    skipped = sum(1 for r in d["candidates"] if r.get("status") == "left-out")
    out.print(f"on {cpu['class']}: {built} candidate(s) built and judged in {d['seconds']:.0f} s, {skipped} left out by "
              f"the budget or the screen (`make optimize` builds them all; reports/demo/selection.md says which)")
    mb, fp32_mb = files_size(dest) / 1e6, files_size(fp32_onnx) / 1e6
    out.print(f"size: {mb:.1f} MB vs {fp32_mb:.1f} MB fp32 ONNX")
    out.print(f"reports: {reports}/selection.md, {reports}/bench.md  |  serve it: make serve (ARTIFACT={dest})")
    return dest
