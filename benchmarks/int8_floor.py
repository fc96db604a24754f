"""INT8 floor benchmark: the project's fastest CPU artifacts against this CPU's INT8 GEMM peak, PyTorch eager fp32
and plain `nncf.quantize` defaults, all in ONE process, interleaved round by round, best-of-N and median.

    python -m benchmarks.int8_floor [--model base-random] [--shapes 1x128,8x128] [--rounds 20] [--out reports]

Floor = the model's FLOPs (encoder GEMMs + attention products, head excluded) / the INT8 GEMM peak, where the
peak is the best-of-N `torch._int_mm` rate over the model's own GEMM shapes (M = batch x sequence) at the same
thread count as every candidate. The 1-thread peak is reported beside it. `% of floor` = floor / best latency.
Missing artifacts are built first (export, NNCF INT8, ORT dynamic INT8), before any timing. After timing, the
fastest OpenVINO candidate is profiled per layer (PERF_COUNT) so the report shows where the time goes."""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from runtimes.hardware import cpu_info  # the one CPU reader every report uses

from .bench.timing import Timing, time_calls
from .bench.workloads import build_feeds, fixed
from .int8_floor_report import (CandidateResult, GemmTime, Int8FloorReport, LayerTime, Profile, ShapeResult,
                                render)
from .report_io import write_report

TASK = "text-classification"


@dataclass
class Candidate:
    name: str
    kind: str  # reference | peer | project
    what: str  # how it was built and run
    run: Callable[[], object]
    cls_pruned: bool = False  # last layer computes the [CLS] row only (exporters/cls_pruning.py): fewer FLOPs run
    artifact: str | None = None  # key into ensure_artifacts() paths, for project candidates
    samples: list[float] = field(default_factory=list)


def model_flops(config: dict, batch: int, seq: int) -> float:
    """Encoder FLOPs: q/k/v/o and both FFN GEMMs per layer, plus QK^T and AV (2 FLOPs per multiply-add)."""
    d, h, layers = config["dim"], config["hidden_dim"], config["n_layers"]
    m = batch * seq
    return layers * (4 * 2 * m * d * d + 2 * 2 * m * d * h + 2 * 2 * batch * seq * seq * d)


def gemm_peak(config: dict, m: int, threads: int, reps: int) -> dict:
    """Best-of-N torch._int_mm GOPS per GEMM shape of the model (int8 x int8 -> int32), exact result checked."""
    import torch

    torch.set_num_threads(threads)
    d, h = config["dim"], config["hidden_dim"]
    out = {}
    for k, n in ((d, d), (d, h), (h, d)):
        a = torch.randint(-128, 128, (m, k), dtype=torch.int8)
        b = torch.randint(-128, 128, (k, n), dtype=torch.int8)
        if not torch.equal(torch._int_mm(a, b), a.int() @ b.int()):
            raise RuntimeError(f"torch._int_mm gave a wrong result at {m}x{k}x{n}")
        timing = Timing(warmup=0, min_time_s=0.0, min_iters=reps, calls_per_turn=reps, rewarm=0, settle_s=0.0)
        best_ns = min(time_calls({"gemm": lambda: torch._int_mm(a, b)}, timing, "gemm-peak")["gemm"])
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / (best_ns / 1e9) / 1e9
    return out


def feed(batch: int, seq: int) -> dict[str, np.ndarray]:
    """The bench's synthetic feed: seeded ids between [CLS] and [SEP], every token real."""
    return build_feeds(fixed(batch, seq), {"input_ids": ("batch", "sequence"),
                                           "attention_mask": ("batch", "sequence")})[0]


def ensure_artifacts(model: str, root: Path) -> dict[str, Path]:
    """The project artifacts this benchmark times; each built with the project's own commands when missing."""
    from exporters.onnx_export import ExportConfig, export
    from quantization.api import quantize
    from quantization.config import QuantizeConfig

    base = root / model / TASK
    paths = {"fp32": base / "onnxruntime-fp32", "ov-int8": base / "openvino-int8",
             "ov-int8-bf16": base / "openvino-int8-avx512-bf16", "ort-int8": base / "onnxruntime-dynamic",
             "fp32-cls": base / "onnxruntime-fp32-cls", "ov-int8-bf16-cls": base / "openvino-int8-avx512-bf16-cls"}
    for key, pruned in (("fp32", False), ("fp32-cls", True)):
        if not (paths[key] / "manifest.json").exists():
            export(ExportConfig(model=model, task=TASK, out=paths[key], cls_pruning=pruned))
    recipes = {"ov-int8": ("fp32", "openvino", "int8", "cpu-f32"), "ov-int8-bf16": ("fp32", "openvino", "int8", "avx512-bf16"),
               "ort-int8": ("fp32", "onnxruntime", "dynamic", "avx512-vnni"),
               "ov-int8-bf16-cls": ("fp32-cls", "openvino", "int8", "avx512-bf16")}
    for key, (src, backend, method, target) in recipes.items():
        if not (paths[key] / "manifest.json").exists():
            quantize(QuantizeConfig(artifact=paths[src], out=paths[key], backend=backend, method=method, target=target))
    return paths


def plain_nncf(fp32_dir: Path, calibration: int):
    """The public-tool peer exactly as a user writes it: convert, nncf.quantize(model, dataset), compile defaults."""
    import nncf
    import openvino as ov

    from quantization.calibration import MAX_LENGTH, calibration_texts
    from runtimes.tasks import load_tokenizer

    tok = load_tokenizer(fp32_dir)
    items = []
    for text in calibration_texts(calibration):
        enc = tok(text, truncation=True, max_length=MAX_LENGTH, return_tensors="np")
        items.append({k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    return nncf.quantize(ov.convert_model(str(fp32_dir / "model.onnx")), nncf.Dataset(items))


def candidates_for(batch: int, seq: int, loaded, plain, paths, threads: int) -> list[Candidate]:
    import openvino as ov
    import torch

    from runtimes.base import RuntimeOptions
    from runtimes.registry import load_runtime

    x = feed(batch, seq)
    tx = {k: torch.from_numpy(v) for k, v in x.items()}
    core = ov.Core()

    def torch_eager():
        with torch.inference_mode():
            loaded.model(**tx)

    def compiled_plain(static: bool):
        model = plain
        if static:
            model = plain.clone()
            model.reshape({p.get_any_name(): [batch, seq] for p in model.inputs})
        request = core.compile_model(model, "CPU").create_infer_request()
        return lambda: request.infer(x)

    def project(name: str, what: str, key: str, cls_pruned: bool = False, **options) -> Candidate:
        rt = load_runtime(paths[key], RuntimeOptions(**options))
        return Candidate(name, "project", what, lambda: rt.infer(x), cls_pruned=cls_pruned, artifact=key)

    out = [
        Candidate("pytorch-eager-fp32", "reference", f"torch {torch.__version__} eager, {threads} threads", torch_eager),
        Candidate("plain-nncf-int8", "peer", "ov.convert_model + nncf.quantize(model, dataset) + compile_model "
                  "defaults (dynamic shapes)", compiled_plain(False)),
        Candidate("plain-nncf-int8-static", "peer", "the same, reshaped to the benchmark shape before compile",
                  compiled_plain(True)),
        project("ort-dynamic-int8", "onnxruntime-dynamic (avx512-vnni preset)", "ort-int8", threads=threads),
        project("ov-int8", "openvino-int8 (cpu-f32), latency, dynamic shapes", "ov-int8"),
        project("ov-int8-bf16-static", "openvino-int8-avx512-bf16, latency, static_shapes", "ov-int8-bf16",
                static_shapes=True),
        project("ov-int8-bf16-cls-static", "openvino-int8-avx512-bf16-cls ([CLS]-pruned last layer), latency, "
                "static_shapes", "ov-int8-bf16-cls", cls_pruned=True, static_shapes=True),
    ]
    if batch > 1:
        out.append(project("ov-int8-bf16-static-throughput", "openvino-int8-avx512-bf16, throughput hint (row chunks "
                           "on parallel streams), static_shapes", "ov-int8-bf16", static_shapes=True, hint="throughput"))
        out.append(project("ov-int8-bf16-cls-static-throughput", "openvino-int8-avx512-bf16-cls, throughput hint, "
                           "static_shapes", "ov-int8-bf16-cls", cls_pruned=True, static_shapes=True, hint="throughput"))
    return out


def measure(cands: list[Candidate], rounds: int, iters: int, warmup: int = 3) -> None:
    """`rounds` interleaved rounds of `iters` calls per candidate (the order rotated each round), after `warmup`
    calls each: the harness's loop (benchmarks/bench/timing.py). Appends seconds a call to each c.samples."""
    timing = Timing(warmup=warmup, min_time_s=0.0, min_iters=rounds * iters, calls_per_turn=iters, rewarm=0,
                    settle_s=0.0)
    ns = time_calls({c.name: c.run for c in cands}, timing, "int8-floor")  # one feed each, bound in run
    for c in cands:
        c.samples += [x / 1e9 for x in ns[c.name]]


def profile_openvino(artifact: Path, batch: int, seq: int, reps: int = 10) -> Profile:
    """Per-layer-type time of the best of `reps` runs, from OpenVINO's PERF_COUNT (static shape, latency)."""
    import openvino as ov

    from runtimes.artifact import load_artifact
    from runtimes.openvino_backend import precision_hint

    art = load_artifact(artifact)
    core = ov.Core()
    model = core.read_model(str(art.model_path))
    model.reshape({p.get_any_name(): [batch, seq] for p in model.inputs})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
                                                 "INFERENCE_PRECISION_HINT": precision_hint(art.manifest)})
    request, x = compiled.create_infer_request(), feed(batch, seq)
    best = None
    for _ in range(reps + 3):
        request.infer(x)
        info = [p for p in request.get_profiling_info() if p.status == p.Status.EXECUTED]
        total = sum(p.real_time.total_seconds() for p in info)
        if best is None or total < best[0]:
            best = (total, info)
    by_type: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for p in best[1]:
        key = f"{p.node_type} ({p.exec_type})"
        by_type[key][0] += p.real_time.total_seconds() * 1e3
        by_type[key][1] += 1
    rows = sorted((LayerTime(k, round(v[0], 3), v[1]) for k, v in by_type.items()), key=lambda r: -r.ms)
    return Profile(str(artifact), f"{batch}x{seq}", round(best[0] * 1e3, 3), rows,
                   [GemmTime(**g) for g in gemm_roles(compiled, best[1])])


GEMM_ROLES = ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2", "pre_classifier", "classifier")


def gemm_roles(compiled, info) -> list[dict]:
    """Time and FLOPs of the FullyConnected nodes per role (q_lin ... lin2), FLOPs from the compiled model's own
    shapes (2 x rows x K x N), so a [CLS]-pruned layer counts the rows it really runs."""
    ops = {op.get_friendly_name(): op for op in compiled.get_runtime_model().get_ops()}
    roles: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0, 0.0])
    for p in info:
        if "FullyConnected" not in p.node_type or (op := ops.get(p.node_name)) is None:
            continue
        found = re.findall(r"/(" + "|".join(GEMM_ROLES) + r")/", p.node_name)
        role = found[-1] if found else "unnamed"  # OpenVINO renames some after fusing (out_lin, the classifier)
        a, out = op.input(0).get_partial_shape().to_shape(), op.output(0).get_partial_shape().to_shape()
        r = roles[role]
        r[0] += p.real_time.total_seconds() * 1e3
        r[1] += 1
        r[2] += 2 * math.prod(out[:-1]) * a[-1] * out[-1]
    return [{"role": k, "count": v[1], "ms": round(v[0], 3), "gflop": v[2] / 1e9,
             "gops": round(v[2] / v[0] / 1e6, 1) if v[0] else None} for k, v in sorted(roles.items(), key=lambda kv: -kv[1][0])]


def run(args) -> Int8FloorReport:
    import torch

    from exporters.cls_pruning import saved_flops
    from sources.models import load_model
    from runtimes.artifact import library_versions

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    paths = ensure_artifacts(args.model, args.artifacts)
    config = json.loads((paths["fp32"] / "config.json").read_text())
    loaded = load_model(args.model, TASK)
    plain = plain_nncf(paths["fp32"], args.calibration_size)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    cpu, versions = cpu_info(), library_versions("torch", "onnxruntime", "openvino", "nncf", "numpy")
    results = []
    for batch, seq in shapes:
        cands = candidates_for(batch, seq, loaded, plain, paths, threads)
        peaks = {}
        for _ in range(3):  # the peak is measured before, between and after, interleaved like any candidate
            for shape, gops in gemm_peak(config, batch * seq, threads, args.peak_reps).items():
                peaks[shape] = max(peaks.get(shape, 0.0), gops)
            measure(cands, max(1, args.rounds // 3), args.iters)
            torch.set_num_threads(threads)
        peak1 = max(gemm_peak(config, batch * seq, 1, args.peak_reps).values())
        torch.set_num_threads(threads)
        peak = max(peaks.values())
        flops = model_flops(config, batch, seq)
        floor_ms = flops / peak / 1e6
        by = {c.name: c for c in cands}
        eager, plain_best = min(by["pytorch-eager-fp32"].samples), min(by["plain-nncf-int8"].samples)
        pruned_flops = flops - batch * saved_flops(loaded.model.config, seq)

        def executed(c: Candidate) -> float:
            return pruned_flops if c.cls_pruned else flops

        rows = [CandidateResult(
            c.name, c.kind, c.what, best_ms=min(c.samples) * 1e3, median_ms=statistics.median(c.samples) * 1e3,
            pct_of_floor=100 * floor_ms / (min(c.samples) * 1e3), executed_gflop=executed(c) / 1e9,
            pct_of_peak_executed=100 * executed(c) / min(c.samples) / peak / 1e9, vs_eager=eager / min(c.samples),
            vs_plain_nncf=plain_best / min(c.samples), samples_ms=[round(s * 1e3, 3) for s in c.samples])
            for c in cands]
        fastest = min((r for r in rows if r.kind == "project"), key=lambda r: r.best_ms)
        profile = None
        if args.profile:  # the fastest OpenVINO project candidate's artifact
            fastest_ov = min((c for c in cands if c.artifact and c.artifact.startswith("ov-")), key=lambda c: min(c.samples))
            profile = profile_openvino(paths[fastest_ov.artifact], batch, seq)
        results.append(ShapeResult(f"{batch}x{seq}", flops / 1e9, peak, peaks, peak1, floor_ms, rows, fastest.name,
                                   profile))
    return Int8FloorReport(cls_pruning="reassociated", model=args.model, task=TASK, threads=threads,
                           timer="time.perf_counter_ns around one blocking call (benchmarks/bench/timing.py)",
                           rounds=args.rounds, iters=args.iters, cpu=cpu, versions=versions, shapes=results)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="base-random", help="built-in, local dir or hub id (default: base-random)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="where artifacts are found or built")
    p.add_argument("--shapes", default="1x128,8x128", help="BATCHxSEQ, comma-separated")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--iters", type=int, default=3, help="calls per candidate per round")
    p.add_argument("--peak-reps", type=int, default=30, help="torch._int_mm calls per GEMM shape per peak pass")
    p.add_argument("--threads", type=int, help="default: every logical CPU")
    p.add_argument("--calibration-size", type=int, default=128)
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--out", type=Path, default=Path("reports"))
    args = p.parse_args(argv)
    paths = write_report(run(args), args.out, render, indent=1)
    print(paths["md"].read_text())
    print(f"wrote {paths['json']} and {paths['md']}")
    return 0


if __name__ == "__main__":
    from runtimes.errors import run_main

    raise SystemExit(run_main(main))
