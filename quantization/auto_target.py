"""`--target auto`: the preset for this CPU, picked from its ISA flags (runtimes.hardware.cpu_info), with the
reason recorded in the manifest (recipe.target). Named targets pass through unchanged."""
from __future__ import annotations

from runtimes.errors import ConfigError
from runtimes.hardware import ISA_NAMES, cpu_info

from .presets import PRESETS

AUTO = "auto"


def _is_arm(cpu: dict) -> bool:
    return cpu.get("machine", "").lower() in ("aarch64", "arm64")


def _flag(cpu: dict, *names: str) -> str | None:
    return next((ISA_NAMES[n] for n in names if cpu.get("flags", {}).get(n)), None)


def _onnxruntime(method: str, cpu: dict) -> tuple[str, str]:
    if method == "fp16":
        return "cuda", "fp16 is a GPU recipe: cuda is its only preset"
    if _is_arm(cpu):
        arm64 = PRESETS["arm64"]
        if method in arm64.methods:
            return "arm64", f"{cpu.get('machine')} CPU: the ARM64 preset (NEON dot-product INT8, .ort for minimal builds)"
        raise ConfigError(f"--target auto: no onnxruntime preset for '{method}' on {cpu.get('machine')} (arm64 covers "
                          f"{' and '.join(arm64.methods)}). Fix: --method dynamic, or name a target with --target")
    if vnni := _flag(cpu, "avx512_vnni", "avx_vnni"):
        return "avx512-vnni", f"the CPU has {vnni}: u8 activations x s8 weights at full range"
    if _flag(cpu, "avx2"):
        return "avx2", "AVX2 without VNNI: reduce_range avoids the u8s8 16-bit saturation"
    return "avx2", "no AVX2 or VNNI found: the reduce_range preset is the safe choice (slower)"


def _openvino(method: str, cpu: dict) -> tuple[str, str]:
    if bf16 := _flag(cpu, "amx_bf16", "avx512_bf16"):
        return "avx512-bf16", f"the CPU has {bf16}: the ops NNCF leaves unquantized run in bf16"
    return "cpu-f32", "no AMX-BF16 or AVX512-BF16: the ops NNCF leaves unquantized run in f32"


def choose(backend: str, method: str, target: str | None, cpu: dict | None = None) -> dict:
    """{"requested", "picked", "why"}. picked is None for a backend without presets (inc)."""
    requested = target or AUTO
    if backend == "inc":
        if requested != AUTO:
            raise ConfigError(f"backend inc has no target presets (got --target {requested}); its recipe is the "
                              "same on every CPU. Fix: drop --target")
        return {"requested": AUTO, "picked": None, "why": "Intel Neural Compressor has no target presets"}
    if requested != AUTO:
        return {"requested": requested, "picked": requested, "why": "named by the caller"}
    cpu = cpu if cpu is not None else cpu_info()
    pick = {"onnxruntime": _onnxruntime, "openvino": _openvino}[backend]
    picked, why = pick(method, cpu)
    return {"requested": AUTO, "picked": picked, "why": why, "cpu": cpu.get("model")}
