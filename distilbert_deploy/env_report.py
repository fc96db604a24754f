"""`distilbert-deploy env`: what this machine can build and run (compare `transformers env`, `optimum-cli env`).
gather() is the record (`--json`); render() prints it. Backends are probed only when installed."""
from __future__ import annotations

import importlib.util
import platform
import sys
from importlib import metadata

from runtimes.procs import venv_dir

PROJECT = "pip install 'distilbert-deploy[{}]'"
# (name shown, distributions (first found wins), how to install it, the side venv (runtimes.procs.venv_dir) it
# lives in when not this one)
LIBRARIES = (
    ("torch", ("torch",), PROJECT.format("export"), None),
    ("transformers", ("transformers",), "pip install distilbert-deploy", None),
    ("tokenizers", ("tokenizers",), "pip install distilbert-deploy", None),
    ("onnx", ("onnx",), PROJECT.format("export"), None),
    ("onnxruntime", ("onnxruntime", "onnxruntime-gpu"), PROJECT.format("ort") + " (or ort-gpu)", None),
    ("openvino", ("openvino",), PROJECT.format("openvino"), None),
    ("nncf", ("nncf",), PROJECT.format("openvino"), None),
    ("neural-compressor", ("onnx-neural-compressor",), "make venv-inc", "inc"),
    ("optimum", ("optimum",), "make venv-optimum (the bench's peers)", "optimum"),
    ("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
     "pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12", None),
    ("tensorrt-rtx", ("tensorrt-rtx-cu13", "tensorrt-rtx"), PROJECT.format("tensorrt-rtx"), None),
    ("polygraphy", ("polygraphy",), PROJECT.format("tensorrt-rtx"), None),
    ("fastapi", ("fastapi",), PROJECT.format("serve"), None),
    ("uvicorn", ("uvicorn",), PROJECT.format("serve"), None),
    ("prometheus-client", ("prometheus-client", "prometheus_client"), PROJECT.format("serve"), None),
    ("tritonclient", ("tritonclient",), "pip install 'tritonclient[http,grpc]'", None),
    ("tritonserver (pytriton)", ("nvidia-pytriton",), "make venv-triton", "triton"),
    ("ray", ("ray",), "make venv-ray", "ray"),
    ("pytest", ("pytest",), PROJECT.format("dev"), None),
)
AUTO_CASES = (("onnxruntime", "dynamic"), ("onnxruntime", "static"), ("openvino", "int8"), ("inc", "int8"))


def _version(dists: tuple[str, ...], venv: str | None) -> tuple[str | None, str]:
    """(version of the first distribution found, or None; where it was looked for)."""
    where, shown = {}, f".venv-{venv}" if venv else "this environment"
    if venv is not None:  # another venv of this repo: read its site-packages, do not run it
        where = {"path": [str(p) for p in sorted(venv_dir(venv).glob("lib/python*/site-packages"))]}
        if not where["path"]:
            return None, shown
    for name in dists:
        if found := next(iter(metadata.distributions(name=name, **where)), None):
            return found.version, shown
    return None, shown


def _probe(fn) -> dict:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 (a broken install is reported, not fatal: env is the diagnosis tool)
        return {"error": f"{type(e).__name__}: {e}"}


def _onnxruntime() -> dict:
    import onnxruntime

    return {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}


def _openvino() -> dict:
    import openvino

    core = openvino.Core()
    devices = {}
    for d in core.available_devices:
        devices[d] = {"name": core.get_property(d, "FULL_DEVICE_NAME"),
                      "precisions": [str(x) for x in core.get_property(d, "OPTIMIZATION_CAPABILITIES")]}
    return {"version": openvino.__version__, "devices": devices}


def _tensorrt() -> dict:
    from runtimes.tensorrt_flavor import FLAVORS, Flavor, available

    out = {}
    for name in FLAVORS:
        if not available(name):
            out[name] = {"available": False}
            continue
        f = Flavor(name)
        out[name] = {"available": True, "version": f.version,
                     "builds_for": ", ".join(f.targets()) or "the GPU it runs on"}
    return out


def _arm64() -> dict:
    from runtimes.arm64.env import locate
    from runtimes.errors import BackendUnavailable

    try:
        return {"available": True, **locate().describe()}
    except BackendUnavailable as e:
        return {"available": False, "why": str(e)}


def _auto(cpu: dict) -> dict:
    from quantization.auto_target import choose
    from runtimes.errors import ConfigError

    out = {}
    for backend, method in AUTO_CASES:
        try:
            c = choose(backend, method, "auto", cpu)
            out[f"{backend} {method}"] = {"picked": c["picked"], "why": c["why"]}
        except ConfigError as e:
            out[f"{backend} {method}"] = {"picked": None, "why": str(e)}
    return out


def gather() -> dict:
    from runtimes.hardware import cpu_info, gpu_info, isa

    cpu = cpu_info()
    libs = {}
    for name, dists, install, venv in LIBRARIES:
        version, where = _version(dists, venv)
        libs[name] = {"version": version, "where": where, "install": install}
    has = {m: importlib.util.find_spec(m) is not None for m in ("onnxruntime", "openvino")}
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "libraries": libs,
        "onnxruntime": _probe(_onnxruntime) if has["onnxruntime"] else None,
        "openvino": _probe(_openvino) if has["openvino"] else None,
        "tensorrt": _probe(_tensorrt),
        "gpu": gpu_info(),
        "cpu": {**cpu, "isa": isa(cpu)},
        "arm64_emulation": _probe(_arm64),
        "auto_target": _auto(cpu),
    }


def render(d: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(width=max(Console().width, 120))
    out.print(f"Python {d['python']['version']} ({d['python']['executable']}), {d['platform']}")
    t = Table("library", "version", "where", title="backend libraries", title_justify="left")
    for name, lib in d["libraries"].items():
        t.add_row(name, lib["version"] or f"[red]missing[/] ({lib['install']})", lib["where"])
    out.print(t)
    ort, ov = d["onnxruntime"], d["openvino"]
    out.print("ONNX Runtime providers: " + (", ".join(ort.get("providers", [])) or ort.get("error", "")
                                           if ort else "missing"))
    if ov and "devices" in ov:
        for dev, info in ov["devices"].items():
            out.print(f"OpenVINO device {dev}: {info['name']}; precisions {', '.join(info['precisions'])}")
    else:
        out.print("OpenVINO: " + (ov.get("error", "") if ov else "missing"))
    if "error" in d["tensorrt"]:
        out.print(f"TensorRT: {d['tensorrt']['error']}")
    for flavor, info in d["tensorrt"].items() if "error" not in d["tensorrt"] else ():
        text = (f"{info['version']}, builds for {info['builds_for']}" if info["available"]
                else f"missing ({d['libraries'][flavor]['install']})")
        out.print(f"TensorRT flavor {flavor}: {text}")
    gpus = (d["gpu"] or {}).get("gpus", [])
    out.print("GPU: " + ("; ".join(f"{g['name']} (compute capability {g['compute_capability']}, driver {g['driver']})"
                                   for g in gpus) or "none (no nvidia-smi or no NVIDIA GPU)"))
    cpu = d["cpu"]
    out.print(f"CPU: {cpu['model']} ({cpu['machine']}, {cpu['logical_cpus']} logical CPUs); ISA: "
              + (", ".join(cpu["isa"]) or "none of AVX2/AVX-512/AMX/NEON/SVE"))
    arm = d["arm64_emulation"]
    out.print("emulated aarch64 ONNX Runtime: " + (f"{arm.get('onnxruntime')} under {arm.get('qemu')}"
                                                   if arm.get("available") else "not built (make arm64-env)"))
    t = Table("quantize --backend/--method", "--target auto picks", "why", title="--target auto on this CPU",
              title_justify="left")
    for case, c in d["auto_target"].items():
        t.add_row(case, c["picked"] or "-", c["why"])
    out.print(t)
