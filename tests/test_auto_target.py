"""`--target auto`: the preset follows the CPU's ISA flags, per backend; named targets pass through."""
import json

import pytest

from quantization.auto_target import choose
from runtimes.errors import ConfigError
from runtimes.hardware import CPU_FLAGS


def cpu(*flags, machine="x86_64"):
    return {"model": "test CPU", "machine": machine, "flags": {f: f in flags for f in CPU_FLAGS}}


@pytest.mark.parametrize("backend,method,flags,machine,picked,why", [
    ("openvino", "int8", ("avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8"), "x86_64", "avx512-bf16", "AMX-BF16"),
    ("openvino", "int8", ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), "x86_64", "avx512-bf16", "AVX-512 BF16"),
    ("openvino", "int8-accuracy", ("avx2", "avx512f", "avx512_vnni"), "x86_64", "cpu-f32", "f32"),
    ("openvino", "int8", ("asimd", "asimddp"), "aarch64", "cpu-f32", "f32"),
    ("onnxruntime", "dynamic", ("avx2", "avx512f", "avx512_vnni"), "x86_64", "avx512-vnni", "AVX-512 VNNI"),
    ("onnxruntime", "static", ("avx2", "avx_vnni"), "x86_64", "avx512-vnni", "AVX-VNNI"),
    ("onnxruntime", "dynamic", ("avx2", "fma"), "x86_64", "avx2", "reduce_range"),
    ("onnxruntime", "static", ("asimd", "asimddp"), "aarch64", "arm64", "aarch64"),
    ("onnxruntime", "dynamic", ("asimd",), "arm64", "arm64", "arm64"),
    ("onnxruntime", "fp16", ("avx2",), "x86_64", "cuda", "GPU"),
])
def test_auto_picks_from_the_flags(backend, method, flags, machine, picked, why):
    c = choose(backend, method, "auto", cpu(*flags, machine=machine))
    assert c["requested"] == "auto" and c["picked"] == picked and why in c["why"]


def test_named_targets_pass_and_impossible_ones_are_errors():
    assert choose("onnxruntime", "dynamic", "avx2", cpu("avx512_vnni"))["picked"] == "avx2"
    assert choose("onnxruntime", "dynamic", None, cpu("avx2"))["requested"] == "auto"  # None means auto
    assert choose("inc", "int8", "auto", cpu("avx512_vnni"))["picked"] is None
    with pytest.raises(ConfigError, match="inc has no target presets.*drop --target"):
        choose("inc", "int8", "avx512-vnni", cpu("avx512_vnni"))
    with pytest.raises(ConfigError, match="no onnxruntime preset for 'optimize' on aarch64"):
        choose("onnxruntime", "optimize", "auto", cpu("asimd", machine="aarch64"))


def _proc_flags() -> set[str]:
    for line in open("/proc/cpuinfo"):
        if line.split(":")[0].strip() in ("flags", "Features"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_env_reports_this_machine(capsys):
    """`env --json`: libraries as installed, ORT providers, OpenVINO devices, CPU ISA as /proc/cpuinfo says, and the
    preset auto picks here."""
    from importlib import metadata

    import onnxruntime

    from distilbert_deploy.cli import main

    assert main(["env", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["libraries"]["onnxruntime"]["version"] == metadata.version("onnxruntime")
    assert d["libraries"]["tensorrt"]["version"] is None or d["libraries"]["tensorrt"]["version"]
    assert "pip install" in d["libraries"]["tensorrt"]["install"]
    assert d["onnxruntime"]["providers"] == onnxruntime.get_available_providers()
    assert "CPU" in d["openvino"]["devices"] and "FP32" in d["openvino"]["devices"]["CPU"]["precisions"]
    flags = _proc_flags()
    assert {f for f, on in d["cpu"]["flags"].items() if on} == flags & set(CPU_FLAGS)
    ov = d["auto_target"]["openvino int8"]["picked"]
    assert ov == ("avx512-bf16" if flags & {"amx_bf16", "avx512_bf16"} else "cpu-f32")
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        assert d["auto_target"]["onnxruntime dynamic"]["picked"] == "avx512-vnni"
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert d["cpu"]["model"] in out and "ONNX Runtime providers: " in out and f"│ {ov} " in out
