"""ONNX artifact -> OpenVINO IR artifact (model.xml + model.bin), weights kept fp32 on disk.

The precision is an inference hint, not a weight format: OpenVINO's CPU plugin picks bf16 by default
on CPUs with AVX512-BF16/AMX, so fp32 must be asked for explicitly (INFERENCE_PRECISION_HINT=f32).
The IR is validated against the parent ONNX graph with ONNX Runtime; fp32 must match within atol."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from runtimes.artifact import (Artifact, Manifest, copy_side_files, derived_manifest, finalize, library_versions,
                               load_artifact, staging_dir)
from runtimes.errors import ArtifactError, BackendUnavailable, ConfigError, ExportError
from runtimes.heads import get_head
from runtimes.progress import step
from runtimes.registry import get_backend

# manifest precision -> OpenVINO INFERENCE_PRECISION_HINT
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
VERSIONED = ("openvino", "onnx", "onnxruntime")
MODEL_FILE = "model.xml"


@dataclass(frozen=True)
class OpenVinoExportConfig:
    src: Path  # an onnxruntime fp32 artifact
    out: Path
    precision: str = "fp32"
    atol: float = 1e-4

    def __post_init__(self):
        if self.precision not in HINTS:
            raise ConfigError(f"unknown OpenVINO precision '{self.precision}'. Expected one of: {', '.join(HINTS)}")
        if Path(self.src).absolute() == Path(self.out).absolute():
            raise ConfigError(f"--out '{self.out}' is the source artifact; choose another directory")


def onnx_parent(src: Path, built: str = "OpenVINO IR") -> Artifact:
    """The source artifact, checked: a plain fp32 ONNX export."""
    art = load_artifact(src)
    m = art.manifest
    if m.backend != "onnxruntime" or m.precision != "fp32" or m.source.get("parent") or not m.model_file.endswith(".onnx"):
        raise ArtifactError(f"'{src}' is a {m.backend} {m.precision} artifact; {built} is built from the plain "
                            f"onnxruntime fp32 export (not a derived artifact). Fix: `distilbert-deploy export "
                            f"--task {m.task}` first")
    return art


def export_openvino(cfg: OpenVinoExportConfig) -> Manifest:
    """Build the IR artifact at cfg.out, atomically. Returns its manifest."""
    entry = get_backend("openvino")
    if missing := [m for m in (*entry.modules, "onnxruntime") if importlib.util.find_spec(m) is None]:
        raise BackendUnavailable("openvino", missing=missing, hint=entry.hint)
    import openvino as ov

    from .openvino_attention import attention_record, explicit_attention

    art = onnx_parent(Path(cfg.src))
    with staging_dir(cfg.out) as tmp:
        with step("convert ONNX -> OpenVINO IR"):
            try:
                model = ov.convert_model(str(art.model_path))
            except Exception as e:
                raise ExportError(f"OpenVINO cannot convert '{art.model_path}' ({type(e).__name__}: {str(e)[:300]}). "
                                  f"Nothing was written.") from None
            attention_blocks = explicit_attention(model)
            ov.save_model(model, str(tmp / MODEL_FILE), compress_to_fp16=False)
        copy_side_files(art, tmp)
        with step(f"validate IR ({cfg.precision}) against the ONNX graph"):
            validation = validate_ir(tmp / MODEL_FILE, art, cfg.precision, cfg.atol)
        recipe = {"format": "openvino-ir", "converter": "openvino.convert_model", "compress_to_fp16": False,
                  "inference_precision_hint": HINTS[cfg.precision], "device": "CPU",
                  "attention": attention_record(attention_blocks)}
        manifest = derived_manifest(art, backend="openvino", precision=cfg.precision, model_file=MODEL_FILE,
                                    recipe=recipe, versions=library_versions(*VERSIONED))
        return finalize(tmp, replace(manifest, parity={"export_validation": validation}))


def validate_ir(xml: Path, parent_art, precision: str, atol: float) -> dict:
    """The IR under its hint against ORT on the parent graph; fp32 must be within atol, others are recorded."""
    import onnxruntime as ort
    import openvino as ov

    from .onnx_export import validation_feeds

    head = get_head(parent_art.manifest.task)
    vocab = json.loads((parent_art.path / "config.json").read_text())["vocab_size"]
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": HINTS[precision]})
    ran = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if ran != HINTS[precision]:
        runs = " or ".join(p for p, hint in HINTS.items() if hint in ("f32", ran))  # what this CPU does run
        raise ExportError(f"OpenVINO on this CPU runs an {HINTS[precision]} hint as {ran}, so a {precision} artifact "
                          f"could not run as built here. Fix: --precision {runs} here, or build the {precision} "
                          f"artifact on a CPU that executes {precision}. Nothing was written.")
    session = ort.InferenceSession(str(parent_art.model_path), providers=["CPUExecutionProvider"])
    worst: dict[str, float] = {}
    for feed in validation_feeds(head, vocab):
        ref = dict(zip(head.outputs, session.run(list(head.outputs), feed)))
        res = compiled(feed)
        for name in head.outputs:
            got = np.asarray(res[compiled.output(name)], dtype=np.float32)
            if got.shape != ref[name].shape:
                raise ExportError(f"OpenVINO IR output '{name}' has shape {got.shape}, ONNX {ref[name].shape} "
                                  f"at input {feed['input_ids'].shape}. Nothing was written.")
            worst[name] = max(worst.get(name, 0.0), float(np.max(np.abs(got - ref[name]))))
    if precision == "fp32" and (bad := {k: v for k, v in worst.items() if v > atol}):
        raise ExportError(f"OpenVINO IR (f32) differs from the ONNX graph beyond atol={atol}: {bad}. "
                          f"Nothing was written.")
    return {"passed": True, "reference": "onnxruntime fp32 (parent)", "runtime": f"openvino CPU {precision}",
            "atol": atol if precision == "fp32" else None, "max_abs_diff": worst}
