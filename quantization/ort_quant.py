"""ONNX Runtime recipes: transformer-optimizer pass, fp16, dynamic INT8, static QDQ INT8.

Each reads an fp32 onnxruntime artifact and writes a NEW artifact (staged, then renamed), whose
manifest keeps the parent's source (so parity finds the same PyTorch reference) and names the parent.
The INT8 recipes enforce cfg.max_accuracy_drop through quantization.ort_accuracy (sensitive encoder nodes kept
fp32; QuantizationError and nothing written when no INT8 model meets it)."""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from exporters.edge_bundle import README, write_ort_format, write_readme
from runtimes.artifact import (Artifact, Manifest, copy_side_files, derived_manifest, finalize, library_versions,
                               load_artifact, staging_dir)
from runtimes.errors import ConfigError, QuantizationError
from runtimes.heads import get_head
from runtimes.progress import step

from .config import QuantizeConfig
from .presets import Preset, get_preset

VERSIONED = ("onnx", "onnxruntime", "transformers")
INT8_OPS = ["MatMul", "Gemm", "Attention"]
# The task head stays fp32: quantizing it flipped the default tweet classifier's labels. Listing the
# encoder nodes explicitly matters: ORT rewrites head Gemms to MatMuls under new names otherwise.
HEAD_MARKERS = ("classifier", "qa_outputs", "vocab_")
# fp16 overflows / loses range in these on BERT-family models: keep them in fp32.
FP16_BLOCK = ["LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization", "Softmax",
              "ReduceMean", "ReduceSum", "ReduceMax", "Pow", "Sqrt", "Erf"]
OPT_LEVEL = 1  # ORT basic (device-independent) graph optimizations before the python fusions
PRECISION = {"optimize": "fp32", "fp16": "fp16", "dynamic": "int8", "static": "int8"}


def quantize(cfg: QuantizeConfig, texts: list[str] | None = None) -> Manifest:
    """texts: calibration texts for method 'static' (default: cfg.calibration_size train tweets)."""
    preset = get_preset(cfg.preset_name, cfg.backend, cfg.method)
    parent = load_artifact(cfg.artifact)
    check_parent(parent, cfg)
    calib = None  # (texts, where they came from)
    if cfg.method == "static":
        from .calibration import SOURCE, calibration_texts, check_texts

        calib = ((check_texts(list(texts)), "texts given by the caller") if texts is not None
                 else (calibration_texts(cfg.calibration_size), SOURCE))
    m = parent.manifest
    with staging_dir(cfg.out) as tmp:
        copy_side_files(parent, tmp)
        out = tmp / "model.onnx"
        recipe = RECIPES[cfg.method](parent, out, preset, cfg, calib)
        recipe.update(method=cfg.method, preset=preset.name, preset_description=preset.description, target=cfg.target_choice,
                      backend=cfg.backend, max_accuracy_drop=cfg.max_accuracy_drop,
                      parent_recipe=m.recipe.get("method") or m.recipe.get("format"))
        recipe["size_bytes"] = {"parent_onnx": parent.model_path.stat().st_size, "onnx": out.stat().st_size}
        model_file = "model.onnx"
        if preset.ort_format:  # the .ort is what an edge build ships, so it is the model that runs and parity judges
            made = write_ort_format(out, tmp / "model.ort")
            recipe["size_bytes"]["ort"] = made["ort"]
            recipe["ort_format"] = {"file": "model.ort", "optimization": "fixed", "target_platform": "arm",
                                    "onnx": "model.onnx (same graph, kept for inspection and other builds)",
                                    "minimal_build_config": made["ops_config"], "readme": README,
                                    "checked_on_arm": "distilbert-deploy parity DIR --platform linux-aarch64 (the "
                                                      "aarch64 onnxruntime under QEMU; verdict in parity.suite.platforms)"}
            model_file = "model.ort"
        recipe["cpu_check"] = cpu_check(tmp / model_file, get_head(m.task).multiple_choice)
        if not recipe["cpu_check"]["ok"] and cfg.method != "fp16":
            raise QuantizationError(f"the {cfg.method} model does not run on CPU onnxruntime: "
                                    f"{recipe['cpu_check']['error']}. Nothing was written")
        manifest = derived_manifest(parent, precision=PRECISION[cfg.method], model_file=model_file,
                                    recipe=recipe, versions=library_versions(*VERSIONED))
        if preset.ort_format:
            write_readme(tmp, manifest)
        return finalize(tmp, manifest)


def check_parent(parent: Artifact, cfg: QuantizeConfig) -> None:
    m = parent.manifest
    if m.backend != "onnxruntime" or not m.model_file.endswith(".onnx"):
        raise ConfigError(f"'{parent.path}' is a {m.backend} artifact; the onnxruntime recipes need an ONNX one. "
                          f"Fix: distilbert-deploy export --backend onnxruntime --task {m.task}")
    if m.precision == "int8":
        raise QuantizationError(f"'{parent.path}' is already INT8 (recipe {m.recipe.get('method')}); quantizing "
                                f"it again would compound the error. Fix: quantize its fp32 parent "
                                f"({m.source.get('parent', {}).get('path', 'the onnxruntime-fp32 artifact')})")
    if m.precision != "fp32":
        raise QuantizationError(f"'{parent.path}' is {m.precision}; recipes start from an fp32 artifact. "
                                f"Fix: pass the onnxruntime-fp32 artifact")


def _config(parent: Artifact) -> dict:
    return json.loads((parent.path / "config.json").read_text())


def _optimizer(parent: Artifact, opt_level: int):
    import logging

    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    c = _config(parent)
    return optimizer.optimize_model(str(parent.model_path), model_type="bert", num_heads=c["n_heads"],
                                    hidden_size=c["dim"], opt_level=opt_level)


def optimize(parent: Artifact, out: Path, preset: Preset, cfg: QuantizeConfig, calib) -> dict:
    with step(f"ORT transformer optimizer (bert, opt_level {OPT_LEVEL})"):
        model = _optimizer(parent, OPT_LEVEL)
        fusions = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
        model.save_model_to_file(str(out))
    return {"format": "onnx", "optimizer": "onnxruntime.transformers.optimizer (model_type bert)",
            "opt_level": OPT_LEVEL, "fusions": fusions}


def fp16(parent: Artifact, out: Path, preset: Preset, cfg: QuantizeConfig, calib) -> dict:
    with step("ORT transformer optimizer + fp16 conversion (keep_io_types)"):
        model = _optimizer(parent, OPT_LEVEL)
        fusions = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
        model.convert_float_to_float16(keep_io_types=True, op_block_list=FP16_BLOCK)
        model.save_model_to_file(str(out))
    return {"format": "onnx", "opt_level": OPT_LEVEL, "fusions": fusions, "keep_io_types": True,
            "fp32_ops": FP16_BLOCK}


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return getattr(QuantType, name)


def word_embedding_gathers(path: Path) -> list[str]:
    """The word-embedding lookup (vocab x dim: half of the default model on disk), for the edge preset's INT8 table."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    tables = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "Gather" and n.input[0] in tables
            and "word_embeddings" in n.input[0] + n.name]


def encoder_nodes(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node
            if n.op_type in INT8_OPS and n.name and not any(h in n.name for h in HEAD_MARKERS)]


def dynamic(parent: Artifact, out: Path, preset: Preset, cfg: QuantizeConfig, calib) -> dict:
    from onnxruntime.quantization import quantize_dynamic

    per_channel = cfg.per_channel or preset.per_channel

    def attempt(tables: list[str]) -> dict:
        def build(src: Path, selected: list[str], path: Path) -> None:
            quantize_dynamic(str(src), str(path), op_types_to_quantize=INT8_OPS + (["Gather"] if tables else []),
                             per_channel=per_channel, reduce_range=preset.reduce_range,
                             weight_type=_qtype(preset.weight_type), nodes_to_quantize=selected + tables,
                             extra_options={"MatMulConstBOnly": True})

        return _controlled(parent, cfg, out, build, f"dynamic INT8 ({preset.name}: weights {preset.weight_type}, "
                                                    f"reduce_range {preset.reduce_range}, per-channel {per_channel})")

    accuracy, embeddings = _with_embeddings(parent, preset, attempt)
    return {**embeddings, "format": "onnx (QOperator, dynamic activations)", "activation_type": "QUInt8 (dynamic)",
            "weight_type": preset.weight_type, "reduce_range": preset.reduce_range, "per_channel": per_channel,
            "op_types": INT8_OPS, "fp32_nodes": ["task head", *accuracy["kept_fp32"]], "calibration": None,
            "accuracy_control": accuracy}


def _with_embeddings(parent: Artifact, preset: Preset, attempt) -> tuple[dict, dict]:
    """attempt(word-embedding Gathers to quantize) -> the accuracy record. With the preset's INT8 table first, in
    every accuracy trial (so the control judges, and compensates for, the table as shipped); without it when the
    table costs more than any fp32 fallback recovers. Returns (accuracy, the recipe's word_embeddings entry)."""
    if not preset.small_embeddings:
        return attempt([]), {}
    tables = word_embedding_gathers(parent.model_path)
    try:
        return attempt(tables), {"word_embeddings": {"int8": True, "nodes": tables, "format": "INT8 table, "
                                                     "dequantized after the lookup"}}
    except QuantizationError as e:
        return attempt([]), {"word_embeddings": {"int8": False, "why": f"with an INT8 word-embedding table: "
                                                                       f"{str(e)[:400]}"}}


def _private_copy(parent: Artifact, out: Path) -> Path:
    """The parent model copied into the staging dir: onnxruntime's quantizers write a '<model>-inferred.onnx'
    next to their input and delete it, so two builds from one parent (or a read-only parent) would collide."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="parent-", dir=out.parent))
    for f in parent.model_path.parent.iterdir():
        if f.name == parent.model_path.name or f.name.startswith(parent.model_path.name + ".") or f.suffix == ".data":
            shutil.copy2(f, work / f.name)
    return work / parent.model_path.name


def _controlled(parent: Artifact, cfg: QuantizeConfig, out: Path, build_from, title: str) -> dict:
    """Quantize every encoder node into `out` (static: the build that calibrates them all, which every later build
    reuses), then enforce cfg.max_accuracy_drop (quantization.ort_accuracy: may keep sensitive encoder nodes fp32, or
    the ones cfg.keep_fp32 names). build_from(private parent copy, nodes_to_quantize, path) writes one model."""
    from .ort_accuracy import control, named_fp32

    nodes = encoder_nodes(parent.model_path)
    named_fp32(cfg.keep_fp32, parent.model_path, nodes)  # a bad name fails here, before any work
    src = _private_copy(parent, out)
    try:
        build = functools.partial(build_from, src)
        with step(title):
            build(nodes, out)
        return control(parent, cfg, nodes, build, out)
    finally:
        shutil.rmtree(src.parent, ignore_errors=True)


def static(parent: Artifact, out: Path, preset: Preset, cfg: QuantizeConfig, calib) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    from .calibration import MAX_LENGTH, make_reader

    texts, source = calib
    per_channel = cfg.per_channel or preset.per_channel
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.calibrate_method]
    extra = {"ActivationSymmetric": preset.activation_symmetric, "WeightSymmetric": preset.weight_symmetric,
             "MatMulConstBOnly": True}
    reader = make_reader(parent.path, texts, get_head(parent.manifest.task).multiple_choice)

    def attempt(tables: list[str]) -> dict:
        reader.rewind()

        def build(src: Path, selected: list[str], path: Path) -> None:
            quantize_static(str(src), str(path), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=INT8_OPS + (["Gather"] if tables else []),
                            nodes_to_quantize=selected + tables,
                            per_channel=per_channel, reduce_range=preset.reduce_range,
                            activation_type=_qtype(preset.activation_type), weight_type=_qtype(preset.weight_type),
                            calibrate_method=method, extra_options=extra,
                            # calibrated once; every accuracy-control trial reuses it
                            calibration_cache_path=str(src.parent / "calibration-ranges.json"))

        return _controlled(parent, cfg, out, build,
                           f"static QDQ INT8 ({preset.name}, {cfg.calibrate_method} on {len(texts)} tweets)")

    with reader:
        accuracy, recipe = _with_embeddings(parent, preset, attempt)
    return {**recipe, "format": "onnx (QDQ)", "activation_type": preset.activation_type, "weight_type": preset.weight_type,
            "activation_symmetric": preset.activation_symmetric, "weight_symmetric": preset.weight_symmetric,
            "reduce_range": preset.reduce_range, "per_channel": per_channel, "op_types": INT8_OPS,
            "fp32_nodes": ["task head", *accuracy["kept_fp32"]],
            "calibration": {"source": source, "size": len(texts), "method": cfg.calibrate_method,
                            "max_length": MAX_LENGTH, "padding": "longest in the set"},
            "accuracy_control": accuracy}


RECIPES = {"optimize": optimize, "fp16": fp16, "dynamic": dynamic, "static": static}


def cpu_check(path: Path, multiple_choice: bool) -> dict:
    """Load on CPU ORT and run one padded batch: does the artifact run where parity runs?"""
    import numpy as np
    import onnxruntime as ort

    shape = (2, 2, 9) if multiple_choice else (2, 9)
    ids = np.full(shape, 1000, dtype=np.int64)
    ids[..., 0], ids[..., -1] = 101, 102
    mask = np.ones_like(ids)
    mask[1, ..., 5:] = 0
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        outs = sess.run(None, {"input_ids": ids, "attention_mask": mask})
    except Exception as e:  # noqa: BLE001 (recorded, or raised as QuantizationError by the caller)
        return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
    return {"ok": bool(all(np.isfinite(o).all() for o in outs)), "provider": "CPUExecutionProvider"}
