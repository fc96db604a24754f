"""TensorRT engine builds for every head of one model: build time and engine size, from the manifests the
builds write (one `distilbert-deploy export-trt` subprocess per head, the ONNX source exported first when missing).

    python -m benchmarks.trt_builds --model default --flavor tensorrt-rtx [--targets sm89,sm86] [--out docs/tensorrt]

Writes trt-builds.{json,md}. Nothing here runs an engine: building needs no GPU with TensorRT-RTX."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from benchmarks.artifact_matrix import CLI
from benchmarks.report_io import parse, write_report
from runtimes.artifact import read_manifest
from runtimes.heads import TASKS


@dataclass(frozen=True)
class TrtBuild:
    task: str
    build_seconds: float  # TensorRT's build_serialized_network
    export_trt_wall_seconds: float  # the whole export-trt process
    engine_bytes: int
    fp16_onnx_bytes: int
    fp32_islands: int
    builder_warnings: int
    targets: tuple[str, ...]
    tensorrt_version: str
    profiles: tuple[str, ...]


@dataclass(frozen=True)
class TrtBuildsReport:
    FILE: ClassVar[str] = "trt-builds.json"
    MADE_BY: ClassVar[str] = "python -m benchmarks.trt_builds"
    SCHEMA_VERSION: ClassVar[int] = 1
    model: str
    flavor: str
    cpu: str
    rows: tuple[TrtBuild, ...]
    command: str
    schema_version: int = SCHEMA_VERSION


def build_all(model: str, flavor: str, targets: str, root: Path, tasks) -> list[TrtBuild]:
    rows = []
    for task in tasks:
        src, out = root / model / task / "onnxruntime-fp32", root / model / task / f"{flavor}-fp16"
        if not (src / "manifest.json").is_file():
            subprocess.run([*CLI, "export", "--model", model, "--task", task, "--out", str(src)], check=True)
        t0 = time.perf_counter()
        subprocess.run([*CLI, "export-trt", str(src), "--out", str(out), "--flavor", flavor,
                        *(("--targets", targets) if targets else ())], check=True)
        wall = time.perf_counter() - t0
        r = read_manifest(out).recipe
        rows.append(TrtBuild(task, r["build_seconds"], round(wall, 1), r["engine_bytes"],
                             (out / r["onnx"]).stat().st_size, len(r["fp32_islands"]["nodes"]),
                             r["build_log"]["warnings"], tuple(r["compute_capabilities"]), r["tensorrt_version"],
                             tuple(p["name"] for p in r["profiles"])))
    return rows


def render(doc: dict) -> str:
    report = parse(TrtBuildsReport, doc, TrtBuildsReport.FILE)
    lines = [f"# TensorRT builds: {report.model} ({report.flavor})", "",
             f"Command: `{report.command}`. CPU: {report.cpu}, no GPU. Build time is TensorRT's "
             f"`build_serialized_network`; the wall time adds the fp16 conversion, the island check, the "
             f"tweet-length profile and the process start.", "",
             "| head | build (s) | export-trt wall (s) | engine (MiB) | fp16 ONNX (MiB) | fp32 islands | warnings |",
             "|---|---|---|---|---|---|---|"]
    for r in report.rows:
        lines.append(f"| {r.task} | {r.build_seconds:.1f} | {r.export_trt_wall_seconds:.1f} | "
                     f"{r.engine_bytes / 2**20:.1f} | {r.fp16_onnx_bytes / 2**20:.1f} | {r.fp32_islands} | "
                     f"{r.builder_warnings} |")
    first = report.rows[0]
    lines += ["", f"{first.tensorrt_version}, targets {', '.join(first.targets)}, profiles "
              f"{', '.join(first.profiles)}. The warnings are TensorRT's \"Make sure input ... has Int64 binding\" "
              f"notes (the engine keeps int64 inputs)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench.env import cpu_info

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--flavor", default="tensorrt-rtx", choices=["tensorrt", "tensorrt-rtx"])
    p.add_argument("--targets", default="", help="compute capabilities (RTX), e.g. sm89,sm86; default: the builder's")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--out", type=Path, default=Path("reports/tensorrt"))
    a = p.parse_args(argv)
    rows = build_all(a.model, a.flavor, a.targets, a.artifacts, [t for t in a.tasks.split(",") if t])
    report = TrtBuildsReport(a.model, a.flavor, cpu_info()["model"], tuple(rows),
                             "python -m benchmarks.trt_builds " + " ".join(argv if argv is not None else sys.argv[1:]))
    paths = write_report(report, a.out, render, indent=1)
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    from runtimes.errors import run_main

    raise SystemExit(run_main(main))
