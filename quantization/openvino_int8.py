"""NNCF post-training INT8 for OpenVINO: an fp32 artifact (ONNX, or OpenVINO IR fp32) -> an INT8 IR artifact.

method "int8": nncf.quantize (model_type TRANSFORMER) calibrated on real TRAIN tweets (never the held-out
ones, which parity scores accuracy on), tokenized with the artifact's own tokenizer.
method "int8-accuracy" (text-classification only): nncf.quantize_with_accuracy_control, which reverts the
most harmful layers to fp32 until accuracy on labelled train tweets (disjoint from the calibration slice)
drops by at most cfg.max_accuracy_drop (a fraction: 0.01 = 1 point).

Targets (--target) set the precision of the ops NNCF leaves unquantized (LayerNorm, Softmax, GELU, the head):
cpu-f32 (default, any x86) or avx512-bf16 (CPUs with AVX512-BF16/AMX: faster, checked by parity like any other)."""
from __future__ import annotations

import importlib.util

import numpy as np

from runtimes.artifact import Manifest, copy_side_files, derived_manifest, finalize, library_versions, load_artifact, staging_dir
from runtimes.errors import BackendUnavailable, ConfigError, QuantizationError
from runtimes.registry import get_backend

METHODS = ("int8", "int8-accuracy")
TARGETS = {"cpu-f32": "f32", "avx512-bf16": "bf16"}  # target -> INFERENCE_PRECISION_HINT of the unquantized ops
DEFAULT_TARGET = "cpu-f32"
VALIDATION_SIZE = 300  # labelled train tweets for accuracy control, after the calibration slice
MODEL_FILE = "model.xml"
QUANTIZED_OPS = {"FakeQuantize", "FakeConvert"}
# Task heads stay fp32. Quantizing pre_classifier/classifier of the default tweet classifier collapses it to
# the majority class (held-out accuracy 0.44 vs 0.71); the encoder alone in INT8 keeps it (0.717).
HEAD_PATTERNS = (".*pre_classifier.*", ".*/classifier/.*", ".*qa_outputs.*", ".*vocab_transform.*",
                 ".*vocab_projector.*")
# MiniLM's FFN output projections (lin2) read GELU outputs with per-channel outliers (24.6 where the median is 0.12).
# In INT8 they moved the untrained heads of `default` past parity (feature-extraction worst-token cosine 0.947,
# fill-mask top-5 overlap 0.48, QA exact spans 0.84); with lin2 in fp32 they pass (0.972, 0.827, 1.0). They stay
# fp32 for every task without a labelled accuracy check; text-classification is judged on accuracy and keeps them INT8.
OUTLIER_PATTERNS = (".*ffn/lin2.*",)


def quantize(cfg) -> Manifest:
    """cfg: quantization.config.QuantizeConfig with backend "openvino" and method "int8" or "int8-accuracy"."""
    if cfg.method not in METHODS:
        raise ConfigError(f"OpenVINO quantization method '{cfg.method}' is unknown. Expected one of: {', '.join(METHODS)}")
    target = cfg.target or DEFAULT_TARGET
    if target not in TARGETS:
        raise ConfigError(f"target '{target}' does not fit backend openvino (its targets: {', '.join(TARGETS)}). "
                          f"Fix: --target {DEFAULT_TARGET}, or --backend onnxruntime for the ONNX Runtime presets")
    if missing := [m for m in ("openvino", "nncf") if importlib.util.find_spec(m) is None]:
        raise BackendUnavailable("openvino", missing=missing, hint=get_backend("openvino").hint)
    art = load_artifact(cfg.artifact)
    m = art.manifest
    if m.precision == "int8":
        raise QuantizationError(f"'{cfg.artifact}' is already INT8; quantizing twice compounds the error. "
                                f"Fix: quantize its fp32 parent ({m.source.get('parent', {}).get('path', '?')})")
    if (m.backend, m.precision) not in (("onnxruntime", "fp32"), ("openvino", "fp32")):
        raise QuantizationError(f"'{cfg.artifact}' is a {m.backend} {m.precision} artifact; NNCF INT8 starts from an "
                                f"onnxruntime fp32 or openvino fp32 artifact")
    if cfg.method == "int8-accuracy" and m.task != "text-classification":
        raise ConfigError(f"int8-accuracy needs labelled data, which exists only for text-classification "
                          f"(the tweet classifier); '{cfg.artifact}' is {m.task}. Fix: --method int8")
    import nncf
    import openvino as ov

    from exporters.tweets import split
    from runtimes.tasks import load_tokenizer

    from .calibration import MAX_LENGTH, SOURCE, calibration_texts

    try:
        model = ov.convert_model(str(art.model_path)) if m.backend == "onnxruntime" else ov.Core().read_model(str(art.model_path))
    except Exception as e:  # e.g. an ORT-optimized graph with com.microsoft fused ops
        raise QuantizationError(f"OpenVINO cannot read '{art.model_path}' ({type(e).__name__}: {str(e)[:300]}). "
                                f"Fix: quantize the plain exported fp32 artifact (`distilbert-deploy export`)") from None
    if quantized := sorted({op.get_type_name() for op in model.get_ops()} & QUANTIZED_OPS):
        raise QuantizationError(f"'{cfg.artifact}' already holds quantized ops ({', '.join(quantized)}); "
                                f"quantize its fp32 parent instead")
    texts = calibration_texts(cfg.calibration_size)  # QuantizationError when empty or too small
    tokenizer = load_tokenizer(art.path)
    multiple_choice = m.task == "multiple-choice"

    def feed(text: str) -> dict[str, np.ndarray]:
        enc = tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="np")
        out = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        return {k: v[:, None, :] for k, v in out.items()} if multiple_choice else out  # one choice per prompt

    calibration = nncf.Dataset([feed(t) for t in texts])
    fp32_outliers = OUTLIER_PATTERNS if m.task != "text-classification" else ()
    common = dict(model_type=nncf.ModelType.TRANSFORMER, subset_size=len(texts),
                  ignored_scope=nncf.IgnoredScope(patterns=list(HEAD_PATTERNS + fp32_outliers), validate=False))
    recipe = {"format": "openvino-ir", "quantizer": "nncf", "method": cfg.method, "model_type": "TRANSFORMER",
              "fp32_head": list(HEAD_PATTERNS), "fp32_outlier_layers": list(fp32_outliers),
              "compress_to_fp16": False, "device": "CPU",
              "preset": target, "inference_precision_hint": TARGETS[target],
              "calibration": {"set": SOURCE, "size": len(texts), "max_length": MAX_LENGTH, "tokenizer": "artifact"}}
    if cfg.method == "int8":
        quantized = nncf.quantize(model, calibration, **common)
    else:
        val_tweets = split()[0][cfg.calibration_size:cfg.calibration_size + VALIDATION_SIZE]
        labels = list(m.labels or ())
        validation = nncf.Dataset([(feed(t.text), labels.index(t.label) if t.label in labels else t.label_id)
                                   for t in val_tweets])
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, validation, validation_fn=_accuracy, max_drop=cfg.max_accuracy_drop,
            drop_type=nncf.DropType.ABSOLUTE, **common)
        recipe["accuracy_control"] = {"validation": f"{len(val_tweets)} labelled train tweets after the calibration slice",
                                      "max_drop": cfg.max_accuracy_drop, "drop_type": "absolute"}
    with staging_dir(cfg.out) as tmp:
        ov.save_model(quantized, str(tmp / MODEL_FILE), compress_to_fp16=False)
        copy_side_files(art, tmp)
        manifest = derived_manifest(art, backend="openvino", precision="int8", model_file=MODEL_FILE, recipe=recipe,
                                    versions=library_versions("openvino", "nncf", "onnx"))
        return finalize(tmp, manifest)


def _accuracy(compiled, items) -> tuple[float, list[float]]:
    """NNCF validation_fn: (accuracy, per-item correctness) of the logits' argmax against the label."""
    output = compiled.output(0)
    hits = [float(np.argmax(compiled(x)[output], axis=-1)[0] == y) for x, y in items]
    return (sum(hits) / len(hits) if hits else 0.0), hits
