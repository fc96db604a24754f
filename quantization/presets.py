"""Target presets: the hardware facts a recipe needs, named once.

A preset lists the backends and methods it fits; any other pairing is a ConfigError."""
from __future__ import annotations

from dataclasses import dataclass

from runtimes.errors import ConfigError

TYPES = ("QInt8", "QUInt8")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    backends: tuple[str, ...]
    methods: tuple[str, ...]
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    reduce_range: bool = False  # 7-bit weights: avoids u8s8 overflow in VPMADDUBSW on AVX2 without VNNI
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    per_channel: bool = False  # default; --per-channel turns it on
    ort_format: bool = False  # also write an .ort flatbuffer for minimal/mobile ORT builds
    small_embeddings: bool = False  # INT8 word-embedding table (QDQ Gather) when the accuracy bound still holds

    def __post_init__(self):
        if self.activation_type not in TYPES or self.weight_type not in TYPES:
            raise ConfigError(f"preset {self.name}: quant types must be in {TYPES}")
        if self.activation_symmetric and self.activation_type == "QUInt8":
            raise ConfigError(f"preset {self.name}: symmetric activations need QInt8")


ORT = ("onnxruntime",)
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("avx512-vnni", "x86 with AVX512-VNNI / AVX-VNNI: u8 activations x s8 weights at full range",
               ORT, ("optimize", "dynamic", "static")),
        Preset("avx2", "x86 AVX2 without VNNI: reduce_range avoids the u8s8 16-bit saturation",
               ORT, ("optimize", "dynamic", "static"), reduce_range=True),
        Preset("arm64", "ARM64 edge (NEON dot-product): INT8 encoder (static: S8S8 QDQ; dynamic: u8 activations "
                        "quantized per call) and word embeddings, an .ort file and its operator config for minimal builds",
               ORT, ("static", "dynamic"), activation_type="QInt8", ort_format=True, small_embeddings=True),
        Preset("tensorrt", "TensorRT (ORT TensorRT EP): symmetric S8S8 QDQ, per-channel weights",
               ORT, ("static",), activation_type="QInt8", activation_symmetric=True, per_channel=True),
        Preset("cuda", "NVIDIA GPU via the CUDA EP: fp16 with LayerNorm/Softmax/reductions kept in fp32",
               ORT, ("optimize", "fp16")),
    )
}


def get_preset(name: str, backend: str, method: str) -> Preset:
    try:
        p = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown target preset '{name}'. Expected one of: {', '.join(PRESETS)}") from None
    if backend not in p.backends or method not in p.methods:
        fits = [n for n, q in PRESETS.items() if backend in q.backends and method in q.methods]
        raise ConfigError(f"target '{name}' does not fit backend '{backend}' with method '{method}' "
                          f"(it supports {', '.join(p.backends)} / {', '.join(p.methods)}). "
                          f"Fix: use --target {' or '.join(fits) or '(none for this pairing)'}")
    return p
