"""The machine this process runs on: CPU model and ISA flags, GPUs. The one source every report, `env` and
`quantize --target auto` read. Import-free (/proc, os, subprocess)."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

# /proc/cpuinfo flag -> what users call it. x86 "flags", ARM "Features".
ISA_NAMES = {
    "avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16", "avx512_fp16": "AVX-512 FP16", "amx_tile": "AMX", "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
    "asimd": "NEON", "asimddp": "NEON dot-product", "i8mm": "I8MM", "bf16": "BF16", "sve": "SVE", "sve2": "SVE2",
}
CPU_FLAGS = tuple(ISA_NAMES)


def _read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    model, flags = "", set()
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def cpu_info() -> dict:
    model, flags = _read_cpuinfo()
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"model": model or platform.processor() or platform.machine(),
            "flags": {f: f in flags for f in CPU_FLAGS},
            "logical_cpus": os.cpu_count(), "physical_cores": physical, "usable_cpus": affinity,
            "load_average_1_5_15": load, "machine": platform.machine()}


def isa(cpu: dict) -> list[str]:
    """The ISA extensions present, by their usual names."""
    return [ISA_NAMES[f] for f, on in cpu.get("flags", {}).items() if on and f in ISA_NAMES]


def isa_text(cpu: dict) -> str:
    """isa() as one line for a report."""
    return ", ".join(isa(cpu)) or "none of note"


def same_cpu(a: dict | None, b: dict | None) -> tuple[bool, str]:
    """Two cpu_info() records: the same CPU type (model and ISA flags)? Counts and load may differ."""
    if not a or not b:
        return False, "a report has no CPU record"
    if a.get("model") != b.get("model"):
        return False, f"CPU model differs: '{a.get('model')}' vs '{b.get('model')}'"
    fa, fb = a.get("flags") or {}, b.get("flags") or {}
    diff = sorted(f for f in set(fa) & set(fb) if bool(fa[f]) != bool(fb[f]))
    if diff:
        return False, "ISA flags differ: " + ", ".join(diff)
    return True, "same CPU model and ISA flags"


def gpu_info() -> dict | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = [dict(zip(("name", "driver", "memory", "compute_capability"), (x.strip() for x in line.split(","))))
            for line in out.strip().splitlines() if line.strip()]
    return {"gpus": gpus} if gpus else None


CPU_CLASSES = ("amx", "avx512", "avx2", "arm64", "x86")


def cpu_class(cpu: dict) -> str:
    """The CPU class every speed figure names: amx (AMX-INT8/BF16), avx512 (AVX-512, with or without VNNI/BF16),
    avx2 (AVX2 and FMA, no AVX-512: e.g. AMD Zen 3), arm64, or x86 (older)."""
    flags = cpu.get("flags", {})
    if cpu.get("machine", "").lower() in ("aarch64", "arm64"):
        return "arm64"
    if flags.get("amx_int8") or flags.get("amx_tile"):
        return "amx"
    if flags.get("avx512f"):
        return "avx512"
    if flags.get("avx2"):
        return "avx2"
    return "x86"


CPU_CLASS_NAMES = {"amx": "AMX (Intel Xeon: AMX-INT8/BF16, AVX-512 VNNI/BF16)",
                   "avx512": "AVX-512 (VNNI/BF16 where present)", "avx2": "AVX2-only (no AVX-512, no VNNI)",
                   "arm64": "ARM64", "x86": "x86 without AVX2"}
