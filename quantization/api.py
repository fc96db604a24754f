"""quantize(cfg): dispatch by backend through a small table of "module:function" entries."""
from __future__ import annotations

import importlib

from runtimes.artifact import Manifest
from runtimes.errors import BackendUnavailable

from .config import QuantizeConfig

RECIPES: dict[str, str] = {
    "onnxruntime": "quantization.ort_quant:quantize",
    "openvino": "quantization.openvino_int8:quantize",
    "inc": "quantization.inc:quantize",
}


def quantize(cfg: QuantizeConfig) -> Manifest:
    cfg.target_choice  # noqa: B018 (resolve --target auto, or refuse a target the backend lacks, before any work)
    module, func = RECIPES[cfg.backend].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise BackendUnavailable(cfg.backend, missing=[e.name or module],
                                 hint=f"install the '{cfg.backend}' extra (pip install '.[{cfg.backend}]')",
                                 detail=f"no quantization recipe for it here ({module})") from None
    return getattr(mod, func)(cfg)
