"""Every artifact type x every task of one model: build what is missing, judge all of it with the parity suite
(one run, one reference), and write a task x type matrix (reports/matrix/matrix.{json,md}).

    python -m benchmarks.artifact_matrix --model default [--corpus full] [--types a,b] [--tasks x,y] [--rebuild]

Builds go through the project CLI (one subprocess per artifact, so a failing build is recorded, not fatal).
An artifact that exists with a valid manifest is reused unless --rebuild. Exit 0 only when every cell built and
passed parity."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from benchmarks.report_io import parse, read_json, write_report
from exporters.cls_pruning import CLS_TASKS
from runtimes.errors import ConfigError
from runtimes.heads import TASKS
from runtimes.procs import cli_argv


@dataclass(frozen=True)
class Kind:
    name: str  # the artifact directory name under ARTIFACTS/MODEL/TASK
    args: tuple[str, ...]  # CLI arguments; {src} is the `source` artifact of the same task
    summary: str
    source: str = "onnxruntime-fp32"
    tasks: tuple[str, ...] = ()  # () = every task
    why_not: str = ""  # the reason it does not apply to the other tasks


def _q(backend: str, method: str, target: str | None = None, *extra: str) -> tuple[str, ...]:
    # a kind names one recipe on every CPU: no `--target auto` here
    target = target or {"openvino": "cpu-f32", "inc": None}.get(backend, "cuda" if method == "fp16" else "avx512-vnni")
    return ("quantize", "{src}", "--out", "{out}", "--backend", backend, "--method", method,
            *(("--target", target) if target else ()), *extra)


def _ov(precision: str) -> tuple[str, ...]:
    return ("export-openvino", "{src}", "--out", "{out}", "--precision", precision)


CLI = tuple(cli_argv())
SOURCE = "onnxruntime-fp32"
KINDS: tuple[Kind, ...] = (
    Kind(SOURCE, ("export", "--model", "{model}", "--task", "{task}", "--out", "{out}"), "ONNX fp32 export"),
    Kind("onnxruntime-optimize", _q("onnxruntime", "optimize"), "ORT transformer optimizer (fusions)"),
    Kind("onnxruntime-fp16", _q("onnxruntime", "fp16"), "fp16 for GPUs, LayerNorm/Softmax fp32 (run on CPU here)"),
    Kind("onnxruntime-dynamic", _q("onnxruntime", "dynamic"), "ORT dynamic INT8, avx512-vnni"),
    Kind("onnxruntime-dynamic-avx2", _q("onnxruntime", "dynamic", "avx2"), "ORT dynamic INT8, avx2 (reduce_range)"),
    Kind("onnxruntime-static", _q("onnxruntime", "static"), "ORT static QDQ INT8, avx512-vnni"),
    Kind("onnxruntime-static-avx2", _q("onnxruntime", "static", "avx2"), "ORT static QDQ INT8, avx2"),
    Kind("onnxruntime-static-arm64", _q("onnxruntime", "static", "arm64"), "ORT static S8S8 INT8 + .ort (edge)"),
    Kind("onnxruntime-dynamic-arm64", _q("onnxruntime", "dynamic", "arm64"),
         "ORT dynamic INT8 + INT8 embeddings + .ort (edge: the arm64 preset's smallest)"),
    Kind("onnxruntime-static-tensorrt", _q("onnxruntime", "static", "tensorrt"), "symmetric QDQ for TensorRT (run on CPU ORT here)"),
    Kind("openvino-fp32", _ov("fp32"), "OpenVINO IR, f32 inference precision"),
    Kind("openvino-bf16", _ov("bf16"), "OpenVINO IR, bf16 inference precision"),
    Kind("openvino-int8", _q("openvino", "int8"), "NNCF INT8, rest f32"),
    Kind("openvino-int8-avx512-bf16", _q("openvino", "int8", "avx512-bf16"), "NNCF INT8, rest bf16"),
    Kind("openvino-int8-accuracy", _q("openvino", "int8-accuracy"), "NNCF INT8 with accuracy control (accuracy on "
         "labelled tweets; agreement with fp32 for the other heads)"),
    Kind("inc-int8", _q("inc", "int8"), "Neural Compressor static INT8 (onnx-neural-compressor)"),
    Kind("inc-int8-accuracy", _q("inc", "int8-accuracy"), "Neural Compressor INT8 with accuracy-aware tuning "
         "(same metrics)"),
    Kind("tensorrt-rtx-fp16", ("export-trt", "{src}", "--out", "{out}", "--flavor", "tensorrt-rtx"),
         "TensorRT-RTX fp16 engine, fp32 islands, profiles per sequence bucket (built without a GPU; runs on RTX GPUs)"),
    *((Kind("tensorrt-fp16", ("export-trt", "{src}", "--out", "{out}", "--flavor", "tensorrt"),
            "full TensorRT fp16 engine for this machine's GPU, fp32 islands"),)
      if importlib.util.find_spec("tensorrt") else ()),  # full TensorRT builds only on the GPU it runs on
    Kind("onnxruntime-fp32-cls", ("export", "--model", "{model}", "--task", "{task}", "--cls-pruning", "--out", "{out}"),
         "ONNX fp32, last layer [CLS] row only", tasks=CLS_TASKS, why_not="the head reads every token"),
    Kind("openvino-int8-avx512-bf16-cls", _q("openvino", "int8", "avx512-bf16"), "NNCF INT8 (rest bf16) of the "
         "[CLS]-pruned export: the fastest CPU artifact", source="onnxruntime-fp32-cls", tasks=CLS_TASKS,
         why_not="the head reads every token"),
)


@dataclass(frozen=True)
class Cell:
    """One artifact type on one task; a field that does not apply to the status is null."""
    status: str  # built, reused, not built, build-failed, n/a (the type does not fit the task), not run here
    path: str | None  # the artifact directory (null for n/a)
    why: str | None  # n/a: why the type does not fit the task; not run here: what the engine needs
    seconds: float | None  # build time, when this run built it
    exit: int | None  # build-failed: the CLI's exit status
    error: str | None  # build-failed: the last lines of build.log
    parity: str | None  # "pass" or "fail", when judged
    precision: str | None  # the precision parity judged it at
    checks: dict[str, float] | None  # the judged checks' values
    failed: tuple[str, ...] | None  # the judged checks that failed


def cell(status: str, **fields) -> Cell:
    return Cell(status, **{**dict.fromkeys(f.name for f in dataclasses.fields(Cell)[1:]), **fields})


@dataclass(frozen=True)
class MatrixReport:
    FILE: ClassVar[str] = "matrix.json"
    MADE_BY: ClassVar[str] = "python -m benchmarks.artifact_matrix"
    # 2: every cell carries every Cell field (null where it does not apply); version 1 cells listed only the
    # fields that apply, and read through upgrade_v1
    SCHEMA_VERSION: ClassVar[int] = 2
    model: str
    corpus: str  # the parity corpus, ci or full
    types: tuple[str, ...]  # artifact types, in row order
    summaries: dict[str, str]  # artifact type -> one line on what it is
    tasks: tuple[str, ...]  # in column order
    cells: dict[str, dict[str, Cell]]  # task -> artifact type -> cell
    command: str
    schema_version: int = SCHEMA_VERSION


def upgrade_v1(doc):
    """A version 1 matrix as version 2: each cell's absent fields as null (nothing else changes, an unknown field
    stays and is refused by parse); anything else is returned as it is."""
    if not (isinstance(doc, dict) and doc.get("schema_version") == 1 and isinstance(doc.get("cells"), dict)):
        return doc
    blank = dict.fromkeys(f.name for f in dataclasses.fields(Cell))
    cells = {task: {k: {**blank, **c} if isinstance(c, dict) else c for k, c in row.items()}
             if isinstance(row, dict) else row for task, row in doc["cells"].items()}
    return {**doc, "schema_version": 2, "cells": cells}


def build(kind: Kind, model: str, task: str, root: Path, rebuild: bool, log: Path, dry: bool = False) -> Cell:
    out = root / model / task / kind.name
    if kind.tasks and task not in kind.tasks:
        return cell("n/a", why=kind.why_not)
    if (out / "manifest.json").is_file() and not rebuild:
        return cell("reused", path=str(out))
    if dry:
        return cell("not built", path=str(out))
    src = root / model / task / kind.source
    args = [a.format(model=model, task=task, out=out, src=src) for a in kind.args]
    cmd = [*CLI, *args]
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    seconds = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0 or not (out / "manifest.json").is_file():
        tail = log.read_text().splitlines()[-6:]
        return cell("build-failed", path=str(out), seconds=seconds, exit=proc.returncode, error=" | ".join(tail))
    return cell("built", path=str(out), seconds=seconds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--out", type=Path, default=Path("reports/matrix"))
    p.add_argument("--corpus", default="full", choices=["ci", "full"])
    p.add_argument("--types", default="", help="comma-separated artifact types (default: all)")
    p.add_argument("--tasks", default="", help="comma-separated tasks (default: all six)")
    p.add_argument("--rebuild", action="store_true", help="rebuild artifacts that exist")
    p.add_argument("--no-parity", action="store_true", help="build only")
    p.add_argument("--no-build", action="store_true", help="judge what exists; list the rest as not built")
    p.add_argument("--parity-from", type=Path, action="append", default=[],
                   help="use these parity.json reports (later ones win) instead of running parity (repeatable)")
    a = p.parse_args(argv)
    names = [k.name for k in KINDS]
    types = [t for t in a.types.split(",") if t] or names
    tasks = [t for t in a.tasks.split(",") if t] or list(TASKS)
    if bad := [t for t in types if t not in names]:
        p.error(f"unknown artifact type(s) {', '.join(bad)}; expected some of: {', '.join(names)}")
    if bad := [t for t in tasks if t not in TASKS]:
        p.error(f"unknown task(s) {', '.join(bad)}; expected some of: {', '.join(TASKS)}")
    a.out.mkdir(parents=True, exist_ok=True)
    log = a.out / "build.log"
    kinds = [k for k in KINDS if k.name in types or any(j.source == k.name for j in KINDS if j.name in types)]
    cells: dict[str, dict[str, Cell]] = {t: {} for t in tasks}
    for task in tasks:
        for kind in kinds:
            c = build(kind, a.model, task, a.artifacts, a.rebuild and kind.name != SOURCE, log, a.no_build)
            cells[task][kind.name] = c
            print(f"{task:22s} {kind.name:30s} {c.status}{'' if c.seconds is None else f' {c.seconds} s'}", flush=True)
            if kind.name == SOURCE and c.status == "build-failed":
                break  # every other type starts from it
    for task in tasks:  # engines this machine cannot run are never judged here, and never shown as pass
        for name, c in cells[task].items():
            if c.status in ("built", "reused") and (why := not_runnable_here(Path(c.path))):
                cells[task][name] = dataclasses.replace(c, status="not run here", why=why)
    if not a.no_parity:
        if a.parity_from:
            targets = [t for f in a.parity_from for t in _corpus_checked(f, a.corpus)["targets"]]
        else:
            dirs = [c.path for t in tasks for c in cells[t].values() if c.status in ("built", "reused")]
            targets = []
            if dirs:
                subprocess.run([*CLI, "parity", *dirs, "--corpus", a.corpus, "--out", str(a.out)])
                targets = _parity(a.out / "parity.json")["targets"]
        for t in targets:
            task, name = Path(t["artifact"]).parts[-2:]
            if name in cells.get(task, {}):
                judged = [c for c in t["checks"] if c["passed"] is not None]
                cells[task][name] = dataclasses.replace(
                    cells[task][name], parity="pass" if t["passed"] else "fail", precision=t["precision"],
                    checks={c["name"]: c["value"] for c in judged}, failed=tuple(c["name"] for c in judged
                                                                               if not c["passed"]))
    report = MatrixReport(a.model, a.corpus, tuple(k.name for k in kinds), {k.name: k.summary for k in kinds},
                          tuple(tasks), cells, "python -m benchmarks.artifact_matrix "
                          + " ".join(argv if argv is not None else sys.argv[1:]))
    paths = write_report(report, a.out, render, indent=1)
    print(f"wrote {paths['md']} and {paths['json']}")
    ok = all(c.status in ("built", "reused", "n/a", "not run here") and c.parity in (None, "pass")
             for t in tasks for c in cells[t].values())
    return 0 if ok else 1


def not_runnable_here(path: Path) -> str | None:
    """Why this machine cannot run the artifact (TensorRT engines without their GPU), or None."""
    from runtimes.artifact import read_manifest
    from runtimes.errors import DeployError

    m = read_manifest(path)
    if m.backend != "tensorrt":
        return None
    from runtimes.tensorrt_backend import host_facts, preflight

    try:
        preflight(m, host_facts(m.recipe.get("flavor")))
    except DeployError:
        return f"needs an NVIDIA GPU with TensorRT ({', '.join(m.recipe.get('compute_capabilities') or [])})"
    return None


def _parity(path: Path) -> dict:
    return read_json(path, "distilbert-deploy parity DIR ... --out DIR", "parity.json")


def _corpus_checked(path: Path, corpus: str) -> dict:
    report = _parity(path)
    if (report.get("corpus") or {}).get("size") != corpus:
        raise ConfigError(f"{path} was judged on corpus {report.get('corpus')!r}, not {corpus!r}. "
                          f"Fix: pass reports made with --corpus {corpus}, or --corpus to match")
    return report


def _verdict(c: Cell) -> str:
    if c.status == "not built":
        return "not built"
    if c.status == "build-failed":
        return "BUILD FAILED"
    if c.status == "n/a":
        return "n/a"
    if c.status == "not run here":
        return f"built, not run here: {c.why}"
    if c.parity is None:
        return c.status
    delta, flat = (c.checks or {}).get("accuracy_delta"), (c.checks or {}).get("flat_head_cosine")
    return (("pass" if c.parity == "pass" else "**FAIL** " + ",".join(c.failed or ()))
            + (f" (Δacc {delta:+.4f})" if delta is not None else "")
            + (f" (cos {flat:.3f}†)" if flat is not None else ""))


def render(doc: dict) -> str:
    r = parse(MatrixReport, upgrade_v1(doc), MatrixReport.FILE)
    lines = [f"# Artifact matrix: {r.model}", "",
             f"Every artifact type on every task, judged by the parity suite (`--corpus {r.corpus}`) against "
             f"PyTorch fp32. Command: `{r.command}`.", "",
             "| artifact type | " + " | ".join(r.tasks) + " |", "|---|" + "---|" * len(r.tasks)]
    for k in r.types:
        row = ["not built" if (c := r.cells[t].get(k)) is None else _verdict(c) for t in r.tasks]
        lines.append(f"| `{k}` | " + " | ".join(row) + " |")
    why = {k: next((c.why for t in r.tasks if (c := r.cells[t].get(k)) and c.status == "n/a"), "") for k in r.types}
    if any("flat_head_cosine" in (c.checks or {}) for t in r.tasks for c in r.cells[t].values()):
        lines += ["", "† The head is untrained (fewer than 10 of its fp32 answers on the corpus are decisive: "
                  "every one is a near-tie), so parity judged it by `flat_head_cosine`, the worst-case cosine of its "
                  "raw outputs against PyTorch fp32 (int8 bar 0.95, bf16 0.98, fp16 0.99), instead of by its answers."]
    lines += ["", "Types (n/a: why the type does not apply to that task):", ""]
    lines += [f"- `{k}`: {r.summaries[k]}" + (f"; n/a: {why[k]}" if why[k] else "") for k in r.types]
    failed = [(t, k, c.error or "") for t in r.tasks for k, c in r.cells[t].items() if c.status == "build-failed"]
    if failed:
        lines += ["", "Build failures:", ""] + [f"- {t} / {k}: {e[:400]}" for t, k, e in failed]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from runtimes.errors import run_main

    raise SystemExit(run_main(main))
