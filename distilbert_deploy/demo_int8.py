"""The second half of `make demo`: the fastest CPU artifact for this machine (OpenVINO INT8, `--target auto`),
judged by the parity suite on held-out tweets and timed against PyTorch fp32 in one interleaved run.
Everything it prints comes from the reports it writes (reports/demo/parity.* and bench.*)."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from rich.console import Console

LATENCY_SHAPE = (1, 128)
MIN_TIME_S = 3.0  # per target, interleaved: enough rounds for a stable p50 on a noisy 2-core machine


def run(out: Console, fp32_onnx: Path, reports: Path) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from benchmarks.bench.config import BenchConfig
    from benchmarks.bench.core import run_bench
    from benchmarks.bench.report import write_all
    from benchmarks.bench.runners import files_size
    from benchmarks.parity.report import write
    from benchmarks.parity.runner import ParityConfig, run_parity
    from quantization.api import quantize
    from quantization.config import QuantizeConfig

    int8 = fp32_onnx.parent / "openvino-int8"
    cfg = QuantizeConfig(artifact=fp32_onnx, out=int8, backend="openvino", method="int8", target="auto")
    choice = cfg.target_choice
    out.rule(f"quantize · OpenVINO INT8 · --target auto → {choice['picked']}")
    out.print(f"--target auto picked [bold]{choice['picked']}[/]: {choice['why']}")
    if importlib.util.find_spec("nncf"):  # its per-node INFO lines are for `quantize`, not the demo
        import nncf  # sets its own level on import, so after it

        nncf.set_log_level(logging.WARNING)
    quantize(cfg)

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    out.rule("parity · INT8 against PyTorch fp32 on the 2,000 held-out tweets (corpus full)")
    with Progress(*cols, console=out) as progress:
        report = run_parity(ParityConfig(artifacts=(int8,), corpus="full"), progress)
    write(report, reports)
    checks = {c.name: c for c in report.targets[0].checks}

    out.rule(f"latency · PyTorch fp32 and OpenVINO INT8, interleaved, {LATENCY_SHAPE[0]}×{LATENCY_SHAPE[1]} tokens")
    bench_cfg = BenchConfig(artifacts=(int8,), baselines=("torch-eager-fp32",), peers=(), scenarios=("latency",),
                            latency_shape=LATENCY_SHAPE, min_time_s=MIN_TIME_S, parity_report=reports / "parity.json",
                            out=reports, name="bench", command="make demo")
    with Progress(*cols, console=out) as progress:
        bench = run_bench(bench_cfg, progress, lambda msg: progress.console.print(f"[dim]{msg}[/dim]"))
    d = bench.to_dict()
    write_all(d, reports, "bench")
    p50 = {r["target"]: r["stats"]["p50_ms"] for r in d["results"]}
    ov_id = next(t["id"] for t in d["targets"] if t["kind"] == "artifact")
    cpu = d["environment"]["cpu"]

    acc, agree = checks["accuracy_delta"], checks["label_agreement"]
    fp32_mb, int8_mb = files_size(fp32_onnx) / 1e6, files_size(int8) / 1e6  # model files: .onnx; .xml + .bin
    verdict = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    out.rule(f"OpenVINO INT8 ({choice['picked']}) on {cpu['model']}")
    out.print(f"accuracy: {acc.value * 100:+.1f} pt vs PyTorch fp32 ({acc.detail}); labels agree on "
              f"{agree.value:.1%} of decisive tweets; parity {verdict}")
    out.print(f"speed-up: {p50['torch-eager-fp32'] / p50[ov_id]:.1f}x PyTorch fp32 (p50 {p50['torch-eager-fp32']:.1f} ms "
              f"-> {p50[ov_id]:.2f} ms at {LATENCY_SHAPE[0]}x{LATENCY_SHAPE[1]}, same run)")
    out.print(f"size: {int8_mb:.1f} MB vs {fp32_mb:.1f} MB fp32 ONNX ({fp32_mb / int8_mb:.1f}x smaller)")
    out.print(f"reports: {reports}/parity.md, {reports}/bench.md  |  serve it: make serve ARTIFACT={int8}")
