"""Which recipes can run on this CPU, and how to build each: pure functions of a cpu_info() record (no I/O), so
tests enumerate them for synthetic CPUs. A candidate is built by `distilbert-deploy` commands, one subprocess each."""
from __future__ import annotations

from dataclasses import dataclass, replace

from exporters.cls_pruning import CLS_TASKS  # heads that read only [CLS]: the --cls-pruning variants
from runtimes.hardware import cpu_class

# static variants pad every feed to the next of these: 8-token steps up to 64, where real texts are and padding is
# the largest share of a call (docs/optimize/README.md: tweets-bs16 20.1 -> 14.5 ms on AVX-512). Each bucket is its
# own compiled model with its own copy of the weights, so more buckets cost cache and memory: the steps stop at 64.
BUCKETS = (16, 24, 32, 40, 48, 56, 64, 96, 128, 256, 512)

SOURCE = "onnxruntime-fp32"  # the fp32 export itself is a candidate: no build


@dataclass(frozen=True)
class Candidate:
    id: str
    backend: str  # onnxruntime | openvino
    precision: str  # fp32, bf16, int8
    command: tuple[str, ...] = ()  # distilbert-deploy COMMAND SRC --out DIR ARGS...; () = the source itself
    cls_pruned: bool = False  # built from the [CLS]-pruned fp32 export of the same model
    cost_s: float = 0.0  # build estimate on a 2-core AMX Xeon (2026-12-02), scaled by CPU class in the plan
    why: str = ""
    static: bool = False  # openvino: the same IR padded to sequence buckets, one static model each (BUCKETS)

    def to_dict(self) -> dict:
        return {"id": self.id, "backend": self.backend, "precision": self.precision, "command": list(self.command),
                "cls_pruned": self.cls_pruned, "static_buckets": list(BUCKETS) if self.static else None,
                "why": self.why}

    @property
    def unstatic(self) -> "Candidate":
        """The dynamic-shape candidate a static one is derived from."""
        return replace(self, id=self.id[:-len("-static")], static=False, why=self.why.split("; static")[0])


def _ort_presets(cpu: dict) -> list[str]:
    """ONNX Runtime INT8 presets that run correctly here: arm64 on ARM; avx512-vnni needs VNNI (without it the
    full-range u8s8 products saturate in VPMADDUBSW); avx2 (reduce_range) fits every x86."""
    if cpu_class(cpu) == "arm64":
        return ["arm64"]
    flags = cpu.get("flags", {})
    return (["avx512-vnni"] if flags.get("avx512_vnni") or flags.get("avx_vnni") else []) + ["avx2"]


def has_bf16(cpu: dict) -> bool:
    flags = cpu.get("flags", {})
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


# Priors: which recipe tends to win on which class (first first). Only the order under a budget depends on them;
# the winner is always the measured fastest of what was built. AMX: docs/optimize/amx.md (the OpenVINO INT8 IR
# with static shapes won; NNCF's defaults failed parity). AVX2: the 2026-12-01 probe on an AMD Zen 3 (plain ORT
# INT8 and the fp32 export beat OpenVINO INT8 there).
PRIORS = {
    "avx2": ("onnxruntime-dynamic-avx2", SOURCE, "openvino-int8-cpu-f32", "openvino-fp32", "onnxruntime-optimize",
             "onnxruntime-static-avx2", "openvino-int8-nncf-cpu-f32"),
    "amx": ("openvino-int8-cpu-f32", "openvino-bf16", "openvino-int8-avx512-bf16", "onnxruntime-dynamic-avx512-vnni",
            SOURCE, "openvino-fp32", "onnxruntime-optimize", "onnxruntime-dynamic-avx2",
            "onnxruntime-static-avx512-vnni", "onnxruntime-static-avx2", "openvino-int8-nncf-avx512-bf16",
            "openvino-int8-nncf-cpu-f32"),
}
# AVX-512 without AMX: the AMX order. Measured (docs/optimize/avx512.md) the static int8-cpu-f32 and int8-avx512-bf16
# IRs led within 1-4%; putting int8-avx512-bf16 second spent the demo's 200 s budget before any static variant
# (winner openvino-bf16, 3.1x PyTorch on tweets against 3.9x with this order), so the budget order stays this one.
PRIORS["avx512"] = PRIORS["amx"]


def enumerate_candidates(cpu: dict, task: str, backends: tuple[str, ...] = ("onnxruntime", "openvino")) -> list[Candidate]:
    """Every recipe that can run on this CPU for this head, most likely winners first (PRIORS)."""
    out = []
    if "onnxruntime" in backends:
        out.append(Candidate(SOURCE, "onnxruntime", "fp32", why="the plain fp32 export: no offline fusions"))
        out.append(Candidate("onnxruntime-optimize", "onnxruntime", "fp32",
                             ("quantize", "--backend", "onnxruntime", "--method", "optimize"), cost_s=15,
                             why="fp32 with ORT's offline transformer fusions (attention, LayerNorm, GELU)"))
        for preset in _ort_presets(cpu):
            for method, cost in (("dynamic", 60), ("static", 90)):
                out.append(Candidate(f"onnxruntime-{method}-{preset}", "onnxruntime", "int8",
                                     ("quantize", "--backend", "onnxruntime", "--method", method, "--target", preset),
                                     cost_s=cost, why=f"ONNX Runtime INT8 {method}, preset {preset}"))
    if "openvino" in backends and cpu_class(cpu) != "arm64":
        out.append(Candidate("openvino-fp32", "openvino", "fp32", ("export-openvino", "--precision", "fp32"),
                             cost_s=10, why="OpenVINO IR, f32 inference"))
        if has_bf16(cpu):
            out.append(Candidate("openvino-bf16", "openvino", "bf16", ("export-openvino", "--precision", "bf16"),
                                 cost_s=10, why="OpenVINO IR, bf16 inference (AVX512-BF16 / AMX-BF16)"))
        for target in (["avx512-bf16"] if has_bf16(cpu) else []) + ["cpu-f32"]:
            for scheme, name, cost in (("transformer", "", 60), ("defaults", "nncf-", 60)):
                out.append(Candidate(f"openvino-int8-{name}{target}", "openvino", "int8",
                                     ("quantize", "--backend", "openvino", "--method", "int8", "--target", target,
                                      "--nncf-scheme", scheme), cost_s=cost,
                                     why=f"NNCF INT8 ({'our recipe: model_type TRANSFORMER' if scheme == 'transformer' else 'NNCF defaults'}"
                                         f"; head kept fp32), unquantized ops in {'bf16' if target == 'avx512-bf16' else 'f32'}"))
    order = PRIORS.get(cpu_class(cpu), PRIORS["avx2"])
    rank = {cid: i for i, cid in enumerate(order)}
    return sorted(out, key=lambda c: rank.get(c.id, len(rank)))


def cls_variant(c: Candidate, task: str) -> Candidate | None:
    """The same recipe on the [CLS]-pruned fp32 export, for heads that read only [CLS]; None otherwise."""
    if task not in CLS_TASKS or c.cls_pruned:
        return None
    if c.static:
        inner = cls_variant(c.unstatic, task)
        return replace(static_variant(inner), cost_s=inner.cost_s)
    return Candidate(f"{c.id}-cls", c.backend, c.precision, c.command, True, c.cost_s + 40,
                     c.why + "; last layer [CLS]-only (--cls-pruning)")


def static_variant(c: Candidate) -> Candidate | None:
    """OpenVINO: the same IR with every feed padded to a sequence bucket and one static model compiled per bucket
    (the dynamic model pays a re-shape on every new text length); None for other backends."""
    if c.backend != "openvino" or c.static:
        return None
    return replace(c, id=f"{c.id}-static", static=True, cost_s=1.0, why=c.why + f"; static shapes, sequence buckets "
                   f"{','.join(map(str, BUCKETS))}")


# What a build costs relative to the AMX machine the estimates come from (AVX2 Zen 3 ran ~2.5x slower).
COST_SCALE = {"amx": 1.0, "avx512": 1.3, "avx2": 2.5, "arm64": 3.0, "x86": 3.0}
