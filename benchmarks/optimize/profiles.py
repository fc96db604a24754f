"""Where a call's time goes, per operator: OpenVINO's PERF_COUNT and ONNX Runtime's profiler, on a model as our
runtime runs it (its inference precision; a bucketed IR at its bucket). `optimize` profiles the winner and the
best peer on every workload where a speed target was missed, so the selection report shows why."""
from __future__ import annotations

import collections
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bench.timing import Timing, time_calls, timed_call
from ..bench.workloads import build_feeds, fixed

GEMM = re.compile(r"FullyConnected|MatMul|Gemm|Attention|Conv")  # operator names that are matrix multiplies
TOP = 6  # operators listed per profile; the rest are summed as "other"
PROFILE_S = 8.0  # seconds to compile and profile one model (a static IR at 8x128 included)


@dataclass(frozen=True)
class Model:
    """What to profile: the backend, its model file, OpenVINO's inference precision and sequence buckets."""
    backend: str  # openvino or onnxruntime
    file: Path
    hint: str = "f32"
    buckets: tuple[int, ...] = ()


def artifact_model(path: Path) -> Model:
    from runtimes.artifact import read_manifest
    from runtimes.openvino_backend import precision_hint

    m = read_manifest(path)
    if m.backend == "openvino":
        defaults = m.recipe.get("runtime_defaults", {})
        buckets = tuple(defaults.get("sequence_buckets") or ()) if defaults.get("static_shapes") else ()
        return Model("openvino", Path(path) / m.model_file, precision_hint(m), buckets)
    return Model(m.backend, Path(path) / m.model_file)


def shape_of(result: dict) -> tuple[int, int]:
    """(batch, sequence) of a bench result's mean padded call: real text is profiled at its average shape."""
    rows = max(1, round(result["sequences_per_call"]))
    return rows, max(2, round(result["padded_tokens_per_call"] / max(result["sequences_per_call"], 1e-9)))


def profile(model: Model, input_dims: dict[str, tuple], batch: int, sequence: int, calls: int = 50,
            warm: int = 5) -> tuple[dict, object]:
    """(mean µs a call per operator over `calls` calls at (batch, sequence) after `warm` untimed ones, seeded random
    ids, every token real; the model's call without the profiler, for `side_by_side`)."""
    feed = build_feeds(fixed(batch, sequence), input_dims)[0]
    run = {"openvino": _openvino, "onnxruntime": _onnxruntime}.get(model.backend)
    if run is None:
        return {"shape": f"{batch}x{sequence}", "error": f"no profiler for the {model.backend} backend"}, None
    spent, wall, tool, ran, plain = run(model, feed, calls, warm)
    total = sum(spent.values())
    top = spent.most_common(TOP)
    rest = total - sum(v for _, v in top)
    ops = [{"op": k, "us": round(v, 1), "share": round(v / total, 3)} for k, v in top]
    if rest > 0:
        ops.append({"op": "other", "us": round(rest, 1), "share": round(rest / total, 3)})
    gemm = sum(v for k, v in spent.items() if GEMM.search(k))
    return {"shape": f"{batch}x{sequence}", "ran_at": ran, "tool": tool, "calls": calls, "node_us": round(total, 1),
            "profiled_wall_us": round(wall, 1), "gemm_share": round(gemm / total, 3) if total else 0, "ops": ops}, plain


def side_by_side(calls: list, rounds: int = 6, n: int = 20, settle_s: float = 0.05) -> list[float]:
    """Median µs of each zero-argument call, timed without profiling by the bench harness's loop at a small scale:
    turns of n calls, the order rotated each round, 2 untimed calls and a settle gap before each turn, `rounds`
    turns each."""
    timing = Timing(warmup=2, min_time_s=0.0, min_iters=rounds * n, calls_per_turn=n, rewarm=2, settle_s=settle_s)
    ns = time_calls({str(i): c for i, c in enumerate(calls)}, timing, "profile-side-by-side")
    return [float(np.median(ns[str(i)])) / 1e3 for i in range(len(calls))]


def _openvino(model: Model, feed: dict, calls: int, warm: int):
    import openvino as ov

    from runtimes.openvino_backend import pad_to_bucket

    core = ov.Core()
    ir = core.read_model(str(model.file))
    if model.buckets:  # the bucket model the runtime would run this feed on
        feed, _ = pad_to_bucket(feed, {k: v.ndim - 1 for k, v in feed.items()}, model.buckets)
        ir.reshape({k: list(v.shape) for k, v in feed.items()})
    cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": model.hint}
    request = core.compile_model(ir, "CPU", {**cfg, "PERF_COUNT": True}).create_infer_request()
    for _ in range(warm):
        request.infer(feed)
    spent, wall = collections.Counter(), 0
    for _ in range(calls):
        wall += timed_call(request.infer, feed)[1]
        for p in request.profiling_info:
            if p.status == p.Status.EXECUTED:
                spent[f"{p.node_type} ({p.exec_type})"] += p.real_time.total_seconds() * 1e6 / calls
    plain = core.compile_model(ir, "CPU", cfg).create_infer_request()
    shape = "x".join(str(n) for n in next(iter(feed.values())).shape)
    return spent, wall / calls / 1e3, f"OpenVINO PERF_COUNT ({model.hint})", shape, lambda: plain.infer(feed)


def _onnxruntime(model: Model, feed: dict, calls: int, warm: int):
    import onnxruntime as ort

    def session(profiled: bool, tmp: str = ""):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if profiled:
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tmp) / "ort")
        return ort.InferenceSession(str(model.file), so, providers=["CPUExecutionProvider"])

    with tempfile.TemporaryDirectory() as tmp:
        s = session(True, tmp)
        for _ in range(warm):
            s.run(None, feed)
        wall = sum(timed_call(s.run, None, feed)[1] for _ in range(calls))
        events = json.loads(Path(s.end_profiling()).read_text())
    plain = session(False)
    shape = "x".join(str(n) for n in next(iter(feed.values())).shape)
    return (node_times(events, warm, calls), wall / calls / 1e3, "ONNX Runtime profiler", shape,
            lambda: plain.run(None, feed))


def node_times(events: list[dict], warm: int, calls: int) -> collections.Counter:
    """Mean µs a call per op type from an ONNX Runtime trace, the first `warm` runs left out."""
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    start = runs[warm] if len(runs) > warm else float("inf")
    spent = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            spent[e.get("args", {}).get("op_name", "?")] += e["dur"] / calls
    return spent


def plan(sel: dict, targets: list[dict]) -> dict[str, list[str]]:
    """workload -> [winner, best peer(s)] for every workload on which a target against the peers was missed."""
    out: dict[str, list[str]] = {}
    for t in targets:
        peers = {"all": sel["best_peer"], "passing": sel.get("best_passing_peer", {})}.get(t.get("peers"), {})
        w = t.get("workload")
        if t["passed"] is False and w in peers:
            ids = out.setdefault(w, [sel["winner"]])
            if peers[w]["id"] not in ids:
                ids.append(peers[w]["id"])
    return out


def summary_line(w: str, profiles: list[dict], on_workload: float | None = None) -> str:
    """The winner's call against each peer's at the profiled shape (profiler off, side by side), and how much of
    the winner's operator time is matrix multiplies: the part a recipe cannot remove. on_workload: best peer p50 /
    winner p50 on the workload itself, in the interleaved run."""
    ok = [p for p in profiles if "error" not in p and p.get("wall_us")]
    if len(ok) < 2:
        return ""
    win, rest = ok[0], ok[1:]
    vs = "; ".join(f"{p['id']} {p['wall_us']:.0f} µs ({p['wall_us'] / win['wall_us']:.2f}x the winner's)"
                   for p in rest)
    return (f"the winner's call takes {win['wall_us']:.0f} µs at {win['ran_at']}, against {vs}. "
            f"{win['gemm_share']:.0%} of the winner's operator time is matrix multiplies; removing everything else "
            f"would make it at most {1 / max(win['gemm_share'], 1e-9):.2f}x faster."
            + (f" On `{w}` itself the best peer's p50 was {on_workload:.2f}x the winner's." if on_workload else ""))


def profile_misses(src: Path, result: dict, paths: dict[str, Path], bench: dict, fits, log) -> list[dict]:
    """The winner and the best peer profiled on each workload where a target against the peers was missed.
    `fits(seconds)`: whether the budget has room; what it leaves out is said in the report."""
    from runtimes.artifact import read_manifest

    from .peers import peer_models

    todo = plan(result["selection"], result["targets"])
    if not todo:
        return []
    peers = peer_models(src, bench)
    shapes = {r["workload"]: shape_of(r) for r in bench["results"]}
    dims = {t.name: tuple(t.dims) for t in read_manifest(src).inputs}
    out = []
    for w, ids in todo.items():
        b, s = shapes[w]
        entry, plain = {"workload": w, "shape": f"{b}x{s}", "targets": []}, {}
        for tid in ids:
            if not fits(PROFILE_S):
                entry["targets"].append({"id": tid, "error": "left out by the budget"})
                continue
            if tid in paths:
                model = artifact_model(paths[tid])
            elif tid in peers:
                backend, files, recipe = peers[tid]
                model = Model(backend, files[0], recipe.get("inference_precision_hint", "f32"))
            else:
                entry["targets"].append({"id": tid, "error": "not an ONNX Runtime or OpenVINO model (no profiler)"})
                continue
            try:
                p, call = profile(model, dims, b, s)
            except Exception as e:  # noqa: BLE001 - a profile that cannot run is reported, the selection stands
                p, call = {"error": f"{type(e).__name__}: {e}"}, None
            entry["targets"].append({"id": tid, **p})
            if call:
                plain[tid] = call
        for tid, us in zip(plain, side_by_side(list(plain.values()))):
            next(p for p in entry["targets"] if p["id"] == tid)["wall_us"] = round(us, 1)
        entry["reading"] = summary_line(w, entry["targets"], result["selection"]["best_peer"].get(w, {}).get("ratio"))
        log(f"  profile {w}: {entry['reading'] or 'no pair to compare'}")
        out.append(entry)
    return out
