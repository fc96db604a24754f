"""The peers' models as artifacts, so the parity suite judges them with the same corpus and rules as our candidates:
a report that says a peer is faster also says whether its answers would pass. The peers' runners (benchmarks/bench)
cache what they build; this wraps those files, unchanged, in a manifest derived from the fp32 source."""
from __future__ import annotations

import shutil
from pathlib import Path

from runtimes.artifact import (copy_side_files, derived_manifest, finalize, library_versions, load_artifact,
                               staging_dir)

from ..bench.peers import peer_cache


def peer_models(src: Path, bench: dict) -> dict[str, tuple[str, list[Path], dict]]:
    """peer target id -> (backend, model files, recipe) for the peers the bench timed."""
    model = Path(src) / "model.onnx"
    out = {}
    for t in bench["targets"]:
        if t["status"] != "ok":
            continue
        d = t.get("describe", {})
        if t["kind"] == "ort-qdynamic":
            f = peer_cache("ort-qdynamic", model) / "model.onnx"
            out[t["id"]] = ("onnxruntime", [f], {"peer": "onnxruntime quantize_dynamic(weight_type=QInt8)"})
        elif t["kind"] == "ov-nncf":
            size = bench["config"].get("calibration_size", 300)
            f = peer_cache("ov-nncf", model, size) / "model.xml"
            hint = {"bf16": "bf16", "f16": "f16"}.get(str(d.get("inference_precision")), "f32")
            out[t["id"]] = ("openvino", [f, f.with_suffix(".bin")],
                            {"peer": "nncf.quantize defaults", "inference_precision_hint": hint})
        elif t["kind"] == "optimum-ortq":
            hits = sorted(peer_cache("optimum-ortq", model).parent.glob(peer_cache("optimum-ortq", model).name + "-*"))
            if hits:
                out[t["id"]] = ("onnxruntime", [hits[-1] / "model_quantized.onnx"],
                                {"peer": d.get("quantization", "optimum ORTQuantizer")})
    return {k: v for k, v in out.items() if all(f.is_file() for f in v[1])}


def wrap(src: Path, backend: str, files: list[Path], recipe: dict, dest: Path) -> Path:
    """An artifact at `dest` holding the peer's model files (the first is the model file) and the source's
    tokenizer and config."""
    parent = load_artifact(src)
    with staging_dir(dest) as tmp:
        for f in files:
            shutil.copy2(f, tmp / ("model.onnx" if f.suffix == ".onnx" else f.name))
        copy_side_files(parent, tmp)
        main = "model.onnx" if files[0].suffix == ".onnx" else files[0].name
        finalize(tmp, derived_manifest(parent, backend=backend, precision="int8", model_file=main, recipe=recipe,
                                       versions=library_versions("onnxruntime", "openvino", "nncf")))
    return dest
