"""Every artifact type x every task of one model: build what is missing, judge all of it with the parity suite
(one run, one reference), and write a task x type matrix (reports/matrix/matrix.{json,md}).

    python -m benchmarks.artifact_matrix --model default [--corpus full] [--types a,b] [--tasks x,y] [--rebuild]

Builds go through the project CLI (one subprocess per artifact, so a failing build is recorded, not fatal).
An artifact that exists with a valid manifest is reused unless --rebuild. Exit 0 only when every cell built and
passed parity."""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from exporters.cls_pruning import CLS_TASKS
from runtimes.artifact import write_text_atomic
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


def build(kind: Kind, model: str, task: str, root: Path, rebuild: bool, log: Path, dry: bool = False) -> dict:
    out = root / model / task / kind.name
    if kind.tasks and task not in kind.tasks:
        return {"status": "n/a", "why": kind.why_not}
    if (out / "manifest.json").is_file() and not rebuild:
        return {"status": "reused", "path": str(out)}
    if dry:
        return {"status": "not built", "path": str(out)}
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
        return {"status": "build-failed", "path": str(out), "seconds": seconds, "exit": proc.returncode,
                "error": " | ".join(tail)}
    return {"status": "built", "path": str(out), "seconds": seconds}


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
    cells: dict[str, dict[str, dict]] = {t: {} for t in tasks}
    for task in tasks:
        for kind in kinds:
            r = build(kind, a.model, task, a.artifacts, a.rebuild and kind.name != SOURCE, log, a.no_build)
            cells[task][kind.name] = r
            print(f"{task:22s} {kind.name:30s} {r['status']}{' ' + str(r.get('seconds')) + ' s' if 'seconds' in r else ''}",
                  flush=True)
            if kind.name == SOURCE and r["status"] == "build-failed":
                break  # every other type starts from it
    report = {"schema_version": 1, "model": a.model, "corpus": a.corpus, "types": [k.name for k in kinds],
              "summaries": {k.name: k.summary for k in kinds}, "tasks": tasks, "cells": cells,
              "command": "python -m benchmarks.artifact_matrix " + " ".join(argv if argv is not None else sys.argv[1:])}
    for task in tasks:  # engines this machine cannot run are never judged here, and never shown as pass
        for c in cells[task].values():
            if c["status"] in ("built", "reused") and (why := not_runnable_here(Path(c["path"]))):
                c.update(status="not run here", why=why)
    if not a.no_parity:
        if a.parity_from:
            targets = [t for f in a.parity_from for t in _corpus_checked(f, a.corpus)["targets"]]
        else:
            dirs = [c["path"] for t in tasks for c in cells[t].values() if c["status"] in ("built", "reused")]
            targets = []
            if dirs:
                subprocess.run([*CLI, "parity", *dirs, "--corpus", a.corpus, "--out", str(a.out)])
                targets = json.loads((a.out / "parity.json").read_text())["targets"]
        for t in targets:
            task, name = Path(t["artifact"]).parts[-2:]
            if name in cells.get(task, {}):
                judged = [c for c in t["checks"] if c["passed"] is not None]
                cells[task][name].update(parity="pass" if t["passed"] else "fail", precision=t["precision"],
                                         checks={c["name"]: c["value"] for c in judged},
                                         failed=[c["name"] for c in judged if not c["passed"]])
    write_text_atomic(a.out / "matrix.json", json.dumps(report, indent=1))
    write_text_atomic(a.out / "matrix.md", render(report))
    print(f"wrote {a.out / 'matrix.md'} and {a.out / 'matrix.json'}")
    ok = all(c["status"] in ("built", "reused", "n/a", "not run here") and c.get("parity", "pass") == "pass"
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


def _corpus_checked(path: Path, corpus: str) -> dict:
    report = json.loads(path.read_text())
    if (report.get("corpus") or {}).get("size") != corpus:
        raise ConfigError(f"{path} was judged on corpus {report.get('corpus')!r}, not {corpus!r}. "
                          f"Fix: pass reports made with --corpus {corpus}, or --corpus to match")
    return report


def render(report: dict) -> str:
    tasks, types = report["tasks"], report["types"]
    lines = [f"# Artifact matrix: {report['model']}", "",
             f"Every artifact type on every task, judged by the parity suite (`--corpus {report['corpus']}`) against "
             f"PyTorch fp32. Command: `{report['command']}`.", "",
             "| artifact type | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for k in types:
        row = []
        for t in tasks:
            c = report["cells"][t].get(k)
            if c is None or c["status"] == "not built":
                row.append("not built")
            elif c["status"] == "build-failed":
                row.append("BUILD FAILED")
            elif c["status"] == "n/a":
                row.append("n/a")
            elif c["status"] == "not run here":
                row.append(f"built, not run here: {c['why']}")
            elif "parity" not in c:
                row.append(c["status"])
            else:
                delta, flat = c["checks"].get("accuracy_delta"), c["checks"].get("flat_head_cosine")
                row.append(("pass" if c["parity"] == "pass" else "**FAIL** " + ",".join(c["failed"]))
                           + (f" (Δacc {delta:+.4f})" if isinstance(delta, float) else "")
                           + (f" (cos {flat:.3f}†)" if isinstance(flat, float) else ""))
        lines.append(f"| `{k}` | " + " | ".join(row) + " |")
    why = {k: next((c["why"] for t in tasks if (c := report["cells"][t].get(k, {})).get("status") == "n/a"), "")
           for k in types}
    if any("flat_head_cosine" in c.get("checks", {}) for t in tasks for c in report["cells"][t].values()):
        lines += ["", "† The head is untrained (fewer than 10 of its fp32 answers on the corpus are decisive: "
                  "every one is a near-tie), so parity judged it by `flat_head_cosine`, the worst-case cosine of its "
                  "raw outputs against PyTorch fp32 (int8 bar 0.95, bf16 0.98, fp16 0.99), instead of by its answers."]
    lines += ["", "Types (n/a: why the type does not apply to that task):", ""]
    lines += [f"- `{k}`: {report['summaries'][k]}" + (f"; n/a: {why[k]}" if why[k] else "") for k in types]
    failed = [(t, k, c.get("error", "")) for t in tasks for k, c in report["cells"][t].items() if c["status"] == "build-failed"]
    if failed:
        lines += ["", "Build failures:", ""] + [f"- {t} / {k}: {e[:400]}" for t, k, e in failed]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from runtimes.errors import run_main

    raise SystemExit(run_main(main))
