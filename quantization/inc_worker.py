"""Intel Neural Compressor (onnx-neural-compressor) INT8, run INSIDE .venv-inc (make venv-inc).

This file is the only project code that venv runs: it imports numpy, onnx, onnxruntime and
onnx_neural_compressor, never the project packages (no transformers, no torch). quantization/inc.py (main
environment) tokenizes everything into .npz files and starts it as
    .venv-inc/bin/python quantization/inc_worker.py --model fp32.onnx --out int8.onnx --calib calib.npz ...
It prints progress lines on stdout, writes the INT8 model and a JSON report, and exits non-zero on any failure
(onnx-neural-compressor's autotune itself calls exit(0) when no trial meets the goal: that is caught here).

methods
  int8           static post-training QDQ INT8 of every encoder MatMul/Gemm; the task head stays fp32.
  int8-accuracy  autotune: the same config first, then configs that keep more encoder ops in fp32, most
                 sensitive first, until the eval metric is within --max-drop (absolute) of fp32's. The metric
                 (named in the eval .npz, see METRICS): accuracy on gold labels (text-classification), else
                 task-aware agreement with the fp32 parent's reference outputs, which the .npz carries.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OP_TYPES = ["MatMul", "Gemm"]
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "MatMulInteger", "QGemm", "QAttention",
             "DynamicQuantizeLinear"}
FALLBACK_STEPS = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48)  # encoder nodes kept fp32 per autotune trial, most sensitive first


def say(msg: str) -> None:
    print(f"[inc] {msg}", flush=True)


def load_rows(path: Path, multiple_choice: bool) -> list[dict[str, np.ndarray]]:
    """One feed per row, trimmed to its own length (batch 1; multiple choice: 1 choice)."""
    d = np.load(path)
    ids, mask, lengths = d["input_ids"], d["attention_mask"], d["lengths"]
    rows = []
    for i, n in enumerate(lengths):
        feed = {"input_ids": ids[i:i + 1, :n].astype(np.int64), "attention_mask": mask[i:i + 1, :n].astype(np.int64)}
        rows.append({k: v[:, None, :] for k, v in feed.items()} if multiple_choice else feed)
    return rows


def pre_optimize(src: Path, dst: Path) -> None:
    """ORT basic (device-independent) graph optimizations, the step onnx-neural-compressor runs by default;
    done here once so head nodes are picked from the graph that is actually quantized."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def candidate_nodes(model, head_markers: list[str]) -> tuple[list[str], list[str]]:
    """(encoder nodes to quantize, head nodes kept fp32) among MatMul/Gemm with a constant weight. The attention
    score MatMuls (activation x activation) are left out: onnx-neural-compressor keeps them fp32 anyway."""
    inits = {i.name for i in model.graph.initializer}
    enc, head = [], []
    for n in model.graph.node:
        if n.op_type in OP_TYPES and len(n.input) > 1 and n.input[1] in inits:
            (head if any(h in n.name for h in head_markers) else enc).append(n.name)
    return enc, head


def sensitivity(model_path: Path, enc: list[str], rows: list[dict]) -> list[tuple[str, float]]:
    """Rank encoder nodes by estimated INT8 noise-to-signal ratio (per-tensor, 8-bit uniform over the calibrated
    [min, max] range: noise = (range/255)^2/12 against mean(x^2)), summed over the node's two inputs.
    Activations are measured on the calibration rows through the fp32 graph; constant weights from their values.
    Highest first: those lose the most to INT8 and fall back to fp32 first."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    acts = sorted({x for name in enc for x in nodes[name].input[:2] if x not in inits})
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(a) for a in acts if a not in existing)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    lo = {a: math.inf for a in acts}
    hi = {a: -math.inf for a in acts}
    sq = {a: 0.0 for a in acts}
    cnt = {a: 0 for a in acts}
    for feed in rows:
        for a, v in zip(acts, sess.run(acts, feed)):
            v = v.astype(np.float64)
            lo[a], hi[a] = min(lo[a], float(v.min())), max(hi[a], float(v.max()))
            sq[a] += float((v * v).sum())
            cnt[a] += v.size

    def nsr_of(lo_, hi_, ms):
        rng = max(hi_, 0.0) - min(lo_, 0.0)
        return ((rng / 255) ** 2 / 12) / ms if ms > 0 else 0.0

    ranked = []
    for name in enc:
        total = 0.0
        for x in nodes[name].input[:2]:
            if x in inits:
                w = numpy_helper.to_array(inits[x]).astype(np.float64)
                total += nsr_of(float(w.min()), float(w.max()), float((w * w).mean()))
            else:
                total += nsr_of(lo[x], hi[x], sq[x] / max(cnt[x], 1))
        ranked.append((name, total))
    ranked.sort(key=lambda t: -t[1])
    return ranked


# The metrics the tuning controls (METRICS, judged, score): runtimes/judging/agreement.py, loaded from its file (it is
# numpy-only), so this venv imports no project package and quantization/agreement.py scores exactly the same way.
def _agreement():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "runtimes" / "judging" / "agreement.py"
    spec = importlib.util.spec_from_file_location("_judging_agreement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_a = _agreement()
METRICS, PER_ROW, UNDECIDED, judged, score = _a.METRICS, _a.PER_ROW, _a.UNDECIDED, _a.judged, _a.score


def evaluate(model_path: str, eval_npz: Path, batch: int = 32) -> float:
    """`model_path`'s metric on the eval set: the npz holds input_ids/attention_mask ([rows, seq], or [rows, 2, seq]
    for multiple choice), lengths, metric, and labels (accuracy) or reference + where (agreement)."""
    import onnxruntime as ort

    d = np.load(eval_npz)
    ids, mask, lengths = d["input_ids"], d["attention_mask"], d["lengths"]
    metric = str(d["metric"]) if "metric" in d else "accuracy"
    ref = d["labels"] if metric == "accuracy" else d["reference"]
    where = d["where"] if "where" in d else None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    total, count, at = 0.0, 0, 0
    for s in range(0, len(lengths), batch):
        n = int(lengths[s:s + batch].max())
        outputs = sess.run(None, {"input_ids": ids[s:s + batch, ..., :n].astype(np.int64),
                                  "attention_mask": mask[s:s + batch, ..., :n].astype(np.int64)})
        got = judged(metric, outputs, where[s:s + batch, :n] if where is not None else mask[s:s + batch, ..., :n])
        # per-row references (labels, choices, spans) slice by row; token-level ones by judged-position count
        if metric in PER_ROW:
            want = ref[s:s + batch]
        else:
            want, at = ref[at:at + len(got)], at + len(got)
        t, c = score(metric, got, want)
        total, count = total + t, count + c
    if metric not in PER_ROW and at != len(ref):
        raise ValueError(f"{metric}: judged {at} positions, the reference holds {len(ref)}")
    return total / count if count else 0.0


class Reader:
    """onnx-neural-compressor CalibrationDataReader over pre-tokenized rows, printing progress per pass."""

    def __init__(self, rows: list[dict]):
        self.rows, self.passes = rows, -1
        self.rewind()

    def get_next(self):
        i = next(self.it, None)
        if i is None:
            return None
        if i and i % max(1, len(self.rows) // 4) == 0:
            say(f"  calibration pass {self.passes}: {i}/{len(self.rows)} rows")
        return self.rows[i]

    def rewind(self):
        self.passes += 1
        self.it = iter(range(len(self.rows)))


def make_config(args, reader, exclude: list[str], per_channel: bool | None = None):
    from onnx_neural_compressor.quantization import config
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[args.calibrate_method]
    return config.StaticQuantConfig(
        calibration_data_reader=reader, calibrate_method=method, quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=list(OP_TYPES),
        nodes_to_exclude=list(exclude), per_channel=args.per_channel if per_channel is None else per_channel,
        reduce_range=False,
        calibration_sampling_size=len(reader.rows), execution_provider="CPUExecutionProvider",
        # Quantize MatMul/Gemm inputs only. By default onnx-neural-compressor also puts a QDQ pair on each MatMul's
        # output (before the bias Add and the residual): on the default tweet classifier that alone cost ~6
        # held-out accuracy points.
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                       "OpTypesToExcludeOutputQuantization": list(OP_TYPES)})


def graph_facts(model) -> dict:
    """What the INT8 graph really holds: quantized op counts and the MatMul/Gemm nodes left in fp32."""
    from collections import Counter

    ops = Counter(n.op_type for n in model.graph.node)
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    fp32 = [n.name for n in model.graph.node
            if n.op_type in OP_TYPES and not any(x in dq_out for x in n.input[:2])]
    int8 = [n.name for n in model.graph.node if n.op_type in OP_TYPES and n.name not in fp32]
    return {"quant_ops": {k: v for k, v in sorted(ops.items()) if k in QUANT_OPS}, "int8_nodes": int8,
            "fp32_nodes": fp32}


def run(args) -> dict:
    from importlib.metadata import version

    import onnx
    from onnx_neural_compressor.quantization import quantize as inc_quantize  # the function (package export)
    from onnx_neural_compressor.quantization import tuning
    import onnxruntime as ort

    t0 = time.time()
    report = {"versions": {"onnx-neural-compressor": version("onnx-neural-compressor"), "onnx": onnx.__version__,
                           "onnxruntime": ort.__version__, "numpy": np.__version__}}
    rows = load_rows(args.calib, args.multiple_choice)
    work = Path(tempfile.mkdtemp(prefix="inc-worker-"))
    opt = work / "fp32-basic.onnx"
    say("ORT basic graph optimization of the fp32 model")
    pre_optimize(args.model, opt)
    enc, head = candidate_nodes(onnx.load(str(opt), load_external_data=False), args.head.split(","))
    outliers = [n for n in enc if any(k and k in n for k in args.keep_fp32.split(","))]
    enc = [n for n in enc if n not in outliers]
    if not enc:
        raise RuntimeError("no encoder MatMul/Gemm node found to quantize")
    if outliers:
        say(f"kept fp32 as asked (--keep-fp32): {len(outliers)} nodes")
    say(f"{len(enc)} encoder MatMul/Gemm nodes to quantize; head kept fp32: {', '.join(head) or 'none'}")
    reader = Reader(rows)
    no = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    report["per_channel"] = args.per_channel
    if args.method == "int8":
        say(f"static QDQ INT8, {args.calibrate_method} calibration on {len(rows)} rows")
        inc_quantize(str(opt), str(args.out), make_config(args, reader, head + outliers), optimization_level=no)
        if args.eval:  # the parent decides whether this misses the bound
            base, got = evaluate(str(opt), args.eval), evaluate(str(args.out), args.eval)
            report["check"] = {"metric": args.metric, "fp32_value": round(base, 6), "value": round(got, 6),
                               "eval_rows": args.eval_size}
            say(f"{args.metric} on {args.eval_size} eval rows: fp32 {base:.4f}, int8 {got:.4f}")
    else:
        say(f"ranking {len(enc)} encoder nodes by estimated INT8 noise-to-signal ratio")
        ranked = sensitivity(opt, enc, rows[:32])
        seen, trials = {}, []

        def eval_fn(path: str) -> float:
            if path == str(opt) and path in seen:
                return seen[path]
            acc = evaluate(path, args.eval)
            if path == str(opt):
                seen[path] = acc
                say(f"fp32 {args.metric} on {args.eval_size} eval rows: {acc:.4f}")
            else:
                k = len(trials)
                pc, n = steps[k]
                trials.append({"trial": k, "per_channel": pc, "fp32_fallback_nodes": n, "value": round(acc, 4)})
                say(f"trial {k}: {'per-channel' if pc else 'per-tensor'} weights, {n} encoder nodes in fp32 "
                    f"-> {args.metric} {acc:.4f}")
            return acc

        baseline = eval_fn(str(opt))
        # The tuning space, in order: per-tensor weights (unless --per-channel), per-channel weights, then
        # per-channel with the k most sensitive encoder nodes kept fp32. autotune stops at the first that fits.
        steps = ([] if args.per_channel else [(False, 0)]) + [(True, 0)]
        steps += [(True, k) for k in FALLBACK_STEPS if k < len(enc)]
        configs = [make_config(args, reader, head + [n for n, _ in ranked[:k]], per_channel=pc) for pc, k in steps]
        # autotune's loss is relative to the baseline; the project's max drop is absolute metric points.
        tolerable = args.max_drop / baseline if baseline > 0 else 0.0
        tune = tuning.TuningConfig(config_set=configs, tolerable_loss=tolerable, max_trials=len(configs))
        try:
            best = tuning.autotune(str(opt), tune, eval_fn=eval_fn, calibration_data_reader=reader,
                                   optimization_level=no)
        except SystemExit:  # onnx-neural-compressor exits 0 when no trial meets the goal
            best = None
        report["tuning"] = {"strategy": "sequential: per-tensor weights, per-channel weights, then per-channel "
                                        "with the k most sensitive encoder nodes kept fp32 (k = 1, 2, 4, ...); "
                                        "the first within the loss wins",
                            "sensitivity": "estimated per-tensor INT8 noise-to-signal ratio of the node inputs",
                            "ranking": [[n, float(f"{s:.3g}")] for n, s in ranked],
                            "tolerable_loss_absolute": args.max_drop, "tolerable_loss_relative": round(tolerable, 6),
                            "metric": args.metric, "fp32_value": round(baseline, 4), "trials": trials, "eval_rows": args.eval_size}
        if best is None:
            report["error"] = (f"no tried config stayed within {args.max_drop} {args.metric} of fp32 ({baseline:.4f}): "
                               + ", ".join(f"{'per-channel' if t['per_channel'] else 'per-tensor'}/"
                                           f"{t['fp32_fallback_nodes']} fp32 -> {t['value']}" for t in trials))
            return report
        onnx.save_model(best, str(args.out))
        report["tuning"]["chosen_trial"] = trials[-1]
        report["per_channel"] = trials[-1]["per_channel"]
    q = onnx.load(str(args.out))
    report.update(graph_facts(q))
    report["head_nodes"] = head
    report["outlier_nodes"] = outliers
    report["seconds"] = round(time.time() - t0, 1)
    say(f"done: {len(report['int8_nodes'])} INT8 MatMul/Gemm, {len(report['fp32_nodes'])} kept fp32 "
        f"({report['seconds']}s)")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--method", choices=["int8", "int8-accuracy"], required=True)
    p.add_argument("--calib", type=Path, required=True)
    p.add_argument("--eval", type=Path)
    p.add_argument("--max-drop", type=float, default=0.01)
    p.add_argument("--calibrate-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--per-channel", action="store_true")
    p.add_argument("--multiple-choice", action="store_true")
    p.add_argument("--head", default="classifier,qa_outputs,vocab_")
    p.add_argument("--keep-fp32", default="", help="comma-separated name parts of encoder nodes kept fp32 (int8)")
    args = p.parse_args(argv)
    if args.method == "int8-accuracy" and args.eval is None:
        p.error("int8-accuracy needs --eval")
    if args.eval:
        with np.load(args.eval) as d:
            args.eval_size, args.metric = int(len(d["lengths"])), str(d["metric"]) if "metric" in d else "accuracy"
        if args.metric not in METRICS:
            p.error(f"unknown metric '{args.metric}' in {args.eval} (known: {', '.join(METRICS)})")
    else:
        args.eval_size, args.metric = 0, None
    try:
        report = run(args)
    except (Exception, SystemExit) as e:  # noqa: BLE001 (reported to the parent, which raises QuantizationError)
        import traceback

        traceback.print_exc()
        what = f"exit({e.code}) inside onnx-neural-compressor" if isinstance(e, SystemExit) else type(e).__name__
        report = {"error": f"{what}: {str(e)[:500]}"}
    args.report.write_text(json.dumps(report, indent=2))
    return 1 if "error" in report else 0


if __name__ == "__main__":
    sys.exit(main())
