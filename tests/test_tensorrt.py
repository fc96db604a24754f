"""TensorRT fp16 engines: RTX builds here without a GPU (every tiny head, two default heads), the fp32 islands in
the parsed network, TensorRT's header check, the manifest, cache reuse, and every refusal before TensorRT
deserializes. Inference against PyTorch needs a GPU and TensorRT: marked, skipped here, failing under REQUIRE_HW."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtimes.artifact import load_artifact, sha256_file, update_manifest
from runtimes.base import RuntimeOptions
from runtimes.errors import ArtifactError, ArtifactMismatch, BackendUnavailable, ConfigError, ExportError, InputError
from runtimes.heads import TASKS

from conftest import require_rtx, see_gpu

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("sm89", "sm86")
DEFAULT_TASKS = ("text-classification", "question-answering")
H200 = ("NVIDIA H200", (9, 0))  # Hopper: TensorRT-RTX has no sm90 target, so no RTX engine runs there


# ---------------------------------------------------------------- the machine the runtime sees
# Three machine classes, each with its own right answer: no CUDA GPU; a GPU the engine has no target for (an
# H100/H200 is sm90, which TensorRT-RTX cannot build for at all); a GPU among the engine's targets (it runs).

def this_gpu() -> tuple[str | None, str | None]:
    """(name, compute capability) of the GPU as the runtime's preflight reads it, or (None, None) without one."""
    from runtimes.tensorrt_backend import host_facts

    host = host_facts("tensorrt-rtx")
    return host.gpu, host.compute_capability


def header_check_as_this_machine_reads_it(validity, targets: tuple[str, ...]) -> None:
    """TensorRT's header check of a sound engine built for `targets`, on this machine: without a GPU it cannot be
    checked against a device and nothing is wrong with it (no diagnostics); on a GPU among the targets nothing is
    wrong either; on any other GPU it names the compute capability, and never a malformed engine."""
    gpu, cc = this_gpu()
    assert validity.checked and "MALFORMED_ENGINE" not in validity.diagnostics, validity
    if gpu is None:  # INVALID only in that no device could be checked: no diagnostic at all
        assert validity.valid is False and validity.diagnostics == (), validity
    elif cc in targets:
        assert validity.diagnostics == (), (gpu, cc, validity)
    else:
        assert "UNSUPPORTED_CC" in validity.diagnostics and validity.valid is False, (gpu, cc, validity)


@pytest.fixture(scope="session")
def rtx():
    return require_rtx()


def build(src, out, **kw):
    from exporters.tensorrt_export import TrtExportConfig, export_trt

    return export_trt(TrtExportConfig(src=src, out=out, flavor="tensorrt-rtx", targets=kw.pop("targets", TARGETS), **kw))


@pytest.fixture(scope="session")
def tiny_engines(rtx, tiny_artifacts, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-trt")
    return {task: (build(tiny_artifacts[task, "onnxruntime"], root / task), root / task) for task in TASKS}


@pytest.fixture(scope="session")
def default_engines(rtx, tmp_path_factory):
    from exporters.onnx_export import ExportConfig, export

    root = tmp_path_factory.mktemp("default-trt")
    out = {}
    for task in DEFAULT_TASKS:
        export(ExportConfig(model="default", task=task, out=root / task / "onnx"))
        out[task] = (build(root / task / "onnx", root / task / "trt"), root / task / "trt")
    return out


def engine_of(tiny_engines, default_engines, which):
    model, task = which.split(":")
    return (tiny_engines if model == "tiny" else default_engines)[task]


CASES = [f"tiny:{t}" for t in TASKS] + [f"default:{t}" for t in DEFAULT_TASKS]


@pytest.mark.parametrize("which", CASES)
def test_every_head_builds_an_rtx_engine_for_two_targets_with_bucketed_profiles(tiny_engines, default_engines, which):
    m, path = engine_of(tiny_engines, default_engines, which)
    r = m.recipe
    assert (m.backend, m.precision, m.model_file) == ("tensorrt", "fp16", "model.engine")
    assert r["flavor"] == "tensorrt-rtx" and r["compute_capabilities"] == list(TARGETS) and r["strongly_typed"]
    assert [p["name"] for p in r["profiles"]] == ["seq<=64", "seq<=128", "seq<=512"]
    assert [p["sequence"]["max"] for p in r["profiles"]] == [64, 128, 512]
    assert all(p["sequence"]["min"] == 1 and 1 <= p["sequence"]["opt"] <= p["sequence"]["max"] for p in r["profiles"])
    # opt of the short buckets from real tweet lengths: most tweets are 20..40 tokens, so not the bound
    assert "train tweets" in r["profiles"][0]["opt_from"] and 16 <= r["profiles"][0]["sequence"]["opt"] < 64
    multiple_choice = m.task == "multiple-choice"
    assert all(("num_choices" in p) == multiple_choice for p in r["profiles"])
    if multiple_choice:
        assert r["profiles"][0]["num_choices"] == {"min": 1, "opt": 4, "max": 8}
    assert m.shape_profile["max"]["sequence"] == 512 and m.shape_profile["min"]["sequence"] == 1
    size = (path / "model.engine").stat().st_size
    assert size == r["engine_bytes"] > 1 << 20
    assert load_artifact(path).manifest == m  # every checksum holds


def test_islands_are_fp32_in_the_parsed_network_and_the_check_can_fail(rtx, tiny_engines, default_engines, tmp_path):
    from onnxruntime.transformers.float16 import convert_float_to_float16
    import onnx

    from exporters.tensorrt_fp16 import check_islands

    m, path = default_engines["text-classification"]
    islands = m.recipe["fp32_islands"]
    assert islands["ops"] == {"LayerNormalization": 13, "Softmax": 6, "Erf": 6}  # 6 layers + embeddings
    assert islands["checked_layers"] == len(islands["nodes"]) == 25

    def parsed(onnx_path):
        net = rtx.network(rtx.trt.Builder(rtx.logger))
        parser = rtx.trt.OnnxParser(net, rtx.logger)
        assert parser.parse_from_file(str(onnx_path))
        return net, parser

    net, _ = parsed(path / "model.fp16.onnx")
    assert check_islands(net, rtx.trt, islands) == 25
    # the same nodes converted without islands: the check sees them in half precision
    plain = convert_float_to_float16(onnx.load(str(m.source["parent"]["path"]) + "/model.onnx"), keep_io_types=True)
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    net, _ = parsed(tmp_path / "plain.onnx")
    with pytest.raises(ExportError, match=r"25 fp32 island\(s\) are not fp32.*DataType.HALF"):
        check_islands(net, rtx.trt, islands)


def test_engine_validity_clean_for_the_engine_and_malformed_for_a_corrupted_header(rtx, tiny_engines):
    data = (tiny_engines["text-classification"][1] / "model.engine").read_bytes()
    good = rtx.engine_validity(data)
    header_check_as_this_machine_reads_it(good, TARGETS)
    bad = bytearray(data)
    bad[:4] = b"\0\0\0\0"
    assert "MALFORMED_ENGINE" in rtx.engine_validity(bytes(bad)).diagnostics


def test_manifest_holds_every_engine_fact(rtx, tiny_engines):
    m, path = tiny_engines["question-answering"]
    r = m.recipe
    assert r["tensorrt_version"] == rtx.version == m.versions["tensorrt-rtx"] and r["cuda_version"] == "13"
    assert r["build_gpu"] is None  # RTX builds ahead of time; full TensorRT records the build GPU here
    assert r["hardware_compatibility"] == "none" and r["version_compatible"] is False
    assert r["build_seconds"] > 0 and r["engine_bytes"] == (path / "model.engine").stat().st_size
    assert m.files["model.engine"] == sha256_file(path / "model.engine")
    assert m.files["model.fp16.onnx"] == sha256_file(path / "model.fp16.onnx")
    log = (path / "build.log").read_text()
    assert r["build_log"]["warnings"] == log.count("\n[W] ") + log.startswith("[W] ") >= 2  # the Int64 binding notes
    assert "Int64 binding" in log and "seq<=" not in log  # TensorRT's own log, verbose (layer table) included
    assert len(log.splitlines()) > 1000
    assert r["fp32_islands"]["ops"] == {"LayerNormalization": 5, "Softmax": 2, "Erf": 2}
    assert r["cache"]["kind"] == "runtime" and r["cache"]["file"] == "runtime.cache" and r["progress_monitor"] is True
    poly = r["reproduce"]["polygraphy"]
    assert poly.startswith("env POLYGRAPHY_USE_TENSORRT_RTX=1 polygraphy convert model.fp16.onnx") and "--strongly-typed" in poly
    assert poly.count("--trt-max-shapes") == 3 and "'input_ids:[64,512]'" in poly


def test_recorded_polygraphy_command_rebuilds_the_engine(rtx, tiny_engines, tmp_path):
    m, path = tiny_engines["text-classification"]
    shutil.copytree(path, tmp_path / "a")
    argv = shlex.split(m.recipe["reproduce"]["polygraphy"])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run(argv[:-1] + [str(tmp_path / "poly.engine")], cwd=tmp_path / "a", env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Optimization Profiles  | 3 profile(s)" in p.stdout + p.stderr
    data = (tmp_path / "poly.engine").read_bytes()
    assert len(data) > 1 << 20
    # polygraphy sets no compute capabilities: its engine has TensorRT-RTX's default targets (the manifest's note)
    from runtimes.tensorrt_flavor import RTX_DEFAULT_TARGETS

    assert "polygraphy does not set RTX compute capabilities" in m.recipe["reproduce"]["note"]
    header_check_as_this_machine_reads_it(rtx.engine_validity(data), RTX_DEFAULT_TARGETS)


def test_second_build_reuses_the_cache(rtx, tiny_artifacts, tmp_path, monkeypatch):
    src, out = tiny_artifacts["token-classification", "onnxruntime"], tmp_path / "trt"
    first = build(src, out)
    assert first.recipe["cache"]["reused_from"] is None
    first_cache = sha256_file(out / "runtime.cache")
    second = build(src, out)
    assert second.recipe["cache"]["reused_from"]["path"] == str((out / "runtime.cache").absolute())
    assert second.recipe["cache"]["reused_from"]["sha256"] == first_cache == second.files["runtime.cache"]
    # A GPU run saves the JIT kernels it compiled beside the engine's sha (runtimes/tensorrt_backend.py); the next
    # build of the same model carries them into the new artifact. Stand-in bytes: only the carrying is tested here.
    monkeypatch.setenv("DISTILBERT_DEPLOY_CACHE", str(tmp_path / "cache"))
    saved = tmp_path / "cache" / "tensorrt-rtx" / f"{second.files['model.engine']}.runtime.cache"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"kernels compiled on an RTX GPU")
    third = build(src, out)
    assert (out / "runtime.cache").read_bytes() == b"kernels compiled on an RTX GPU"
    assert third.recipe["cache"]["reused_from"]["path"] == str(saved) and third.recipe["cache"]["bytes"] == 30
    # another model is never fed this cache
    other = build(tiny_artifacts["text-classification", "onnxruntime"], out)
    assert other.recipe["cache"]["reused_from"] is None and "not built from this model" in other.recipe["cache"]["not_reused"]


def test_load_without_a_gpu_says_it_needs_one(tiny_engines, capsys, monkeypatch):
    """As on a CPU-only machine (torch sees no GPU, whatever this one has): refused before TensorRT is touched."""
    from distilbert_deploy.cli import main
    from runtimes.registry import load_runtime

    see_gpu(monkeypatch, None)
    path = tiny_engines["text-classification"][1]
    with pytest.raises(BackendUnavailable, match=r"needs an NVIDIA GPU with tensorrt-rtx .*\(sm89, sm86\), and no CUDA "
                                                 r"GPU is visible here") as e:
        load_runtime(path, RuntimeOptions(device="cuda"))
    assert "cudaError" not in str(e.value)
    with pytest.raises(BackendUnavailable, match="device 'cpu' was asked for; TensorRT engines run on an NVIDIA GPU"):
        load_runtime(path)
    assert main(["predict", str(path), "--device", "cuda", "--text", "hi"]) == 2
    assert "needs an NVIDIA GPU" in capsys.readouterr().err


def test_load_on_an_h200_names_the_compute_capability_rtx_cannot_run(rtx, tiny_engines, capsys, monkeypatch):
    """As on an H100/H200 (sm90), whatever this machine has: TensorRT-RTX has no sm90 target, so the preflight
    refuses the engine with the compute-capability message, never the no-GPU one, before TensorRT deserializes."""
    from distilbert_deploy.cli import main
    from runtimes.registry import load_runtime
    from runtimes.tensorrt_backend import HostFacts, host_facts

    see_gpu(monkeypatch, H200)
    assert host_facts("tensorrt-rtx") == HostFacts(True, rtx.version, "NVIDIA H200", "sm90")
    assert "sm90" not in rtx.targets()
    path = tiny_engines["text-classification"][1]
    # the refusal names the engine's targets, its flavor and version, this GPU and its compute capability, then a Fix
    cc_refusal = (rf"engine built for sm89, sm86 with tensorrt-rtx {re.escape(rtx.version)}; this GPU \(NVIDIA H200\) "
                  r"is sm90\. Fix: TensorRT-RTX has no sm90 target \(it builds for .*\): build with full TensorRT on "
                  r"this GPU, `make export-trt MODEL=tiny TASK=text-classification TRT_FLAVOR=tensorrt`")
    with pytest.raises(ArtifactMismatch, match=cc_refusal) as e:
        load_runtime(path, RuntimeOptions(device="cuda"))
    assert "no CUDA GPU" not in str(e.value) and "cudaError" not in str(e.value)
    assert main(["predict", str(path), "--device", "cuda", "--text", "hi"]) == 2
    assert re.search(cc_refusal, capsys.readouterr().err)
    # parity runs an engine on its GPU or not at all: exit 2 with the same reason
    assert main(["parity", str(path), "--out", str(path.parent / "parity-h200"), "--no-manifest"]) == 2
    assert re.search(cc_refusal, capsys.readouterr().err)
    assert not (path.parent / "parity-h200" / "parity.json").exists()


def test_load_takes_the_gpu_this_machine_has(tiny_engines, capsys):
    """No patching: no GPU -> the no-GPU refusal; a GPU the engine has no target for (an H100/H200's sm90, or any
    other) -> the compute-capability refusal naming it; a GPU among its targets -> it loads and answers."""
    from distilbert_deploy.cli import main
    from runtimes.registry import load_runtime

    gpu, cc = this_gpu()
    path = tiny_engines["text-classification"][1]
    if gpu is None:
        with pytest.raises(BackendUnavailable, match=r"needs an NVIDIA GPU with tensorrt-rtx .*\(sm89, sm86\), and no "
                                                     r"CUDA GPU is visible here"):
            load_runtime(path, RuntimeOptions(device="cuda"))
        rc, want = 2, "no CUDA GPU is visible here"
    elif cc not in TARGETS:
        with pytest.raises(ArtifactMismatch, match=rf"engine built for sm89, sm86 with tensorrt-rtx .*; this GPU "
                                                   rf"\({re.escape(gpu)}\) is {cc}\. Fix: "):
            load_runtime(path, RuntimeOptions(device="cuda"))
        rc, want = 2, f"this GPU ({gpu}) is {cc}"
    else:
        feed = {"input_ids": np.array([[101, 7592, 102]], np.int64), "attention_mask": np.ones((1, 3), np.int64)}
        with load_runtime(path, RuntimeOptions(device="cuda")) as rt:
            logits = rt.infer(feed)["logits"]
            assert logits.shape == (1, 3) and logits.dtype == np.float32 and np.isfinite(logits).all()
            assert rt.describe()["gpu"] == gpu
        rc, want = 0, '"output"'
    assert main(["predict", str(path), "--device", "cuda", "--text", "hi"]) == rc
    out = capsys.readouterr()
    assert want in (out.err if rc else out.out), (gpu, cc, out)


def _host(version, cc="sm89"):
    from runtimes.tensorrt_backend import HostFacts

    return HostFacts(True, version, "NVIDIA GeForce RTX 4090", cc)


def test_manifest_edited_to_another_gpu_or_version_is_refused_naming_the_rebuild(rtx, tiny_engines, tmp_path):
    from runtimes.artifact import read_manifest
    from runtimes.tensorrt_backend import preflight

    path = tmp_path / "a"
    shutil.copytree(tiny_engines["fill-mask"][1], path)
    preflight(read_manifest(path), _host(rtx.version))  # as built: an sm89 GPU with this TensorRT-RTX runs it
    r = read_manifest(path).recipe
    update_manifest(path, recipe={**r, "compute_capabilities": ["sm120"]})
    with pytest.raises(ArtifactMismatch, match=r"engine built for sm120 with tensorrt-rtx .*this GPU \(NVIDIA GeForce "
                                               r"RTX 4090\) is sm89\. Fix: rebuild for it with `make export-trt "
                                               r"MODEL=tiny TASK=fill-mask TRT_FLAVOR=tensorrt-rtx"):
        preflight(read_manifest(path), _host(rtx.version))
    update_manifest(path, recipe={**r, "tensorrt_version": "1.6.0.1"})
    with pytest.raises(ArtifactMismatch, match=r"built with tensorrt-rtx 1.6.0.1; this machine has "
                                               rf"{rtx.version}.*Fix: rebuild with `make export-trt"):
        preflight(read_manifest(path), _host(rtx.version))
    update_manifest(path, recipe={**r, "tensorrt_version": "1.6.0.1", "version_compatible": True})
    preflight(read_manifest(path), _host(rtx.version))  # version-compatible: a later release of the same major loads it
    with pytest.raises(ArtifactMismatch, match="do not load across versions"):
        preflight(read_manifest(path), _host("2.0.0.1"))
    full = {**r, "flavor": "tensorrt", "hardware_compatibility": "ampere+", "compute_capabilities": ["sm86"]}
    update_manifest(path, recipe=full)
    preflight(read_manifest(path), _host(rtx.version, "sm90"))  # ampere+: any sm80+ GPU
    with pytest.raises(ArtifactMismatch, match=r"is sm75"):
        preflight(read_manifest(path), _host(rtx.version, "sm75"))


def test_tampered_or_truncated_engine_is_refused_by_checksum(rtx, tiny_engines, tmp_path):
    from runtimes.registry import load_runtime

    path = tmp_path / "a"
    shutil.copytree(tiny_engines["multiple-choice"][1], path)
    data = bytearray((path / "model.engine").read_bytes())
    (path / "model.engine").write_bytes(bytes(data[: len(data) // 2]))
    # TensorRT's header check passes it: the half engine reads exactly as the whole one does, on any machine
    assert rtx.engine_validity(bytes(data[: len(data) // 2])) == rtx.engine_validity(bytes(data))
    header_check_as_this_machine_reads_it(rtx.engine_validity(bytes(data[: len(data) // 2])), TARGETS)
    with pytest.raises(ArtifactError, match="model.engine: sha256 mismatch"):
        load_runtime(path, RuntimeOptions(device="cuda"))
    data[len(data) // 2] ^= 0xFF
    (path / "model.engine").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="failed its checksum check: model.engine"):
        load_runtime(path, RuntimeOptions(device="cuda"))


def test_shapes_pick_the_tightest_profile_and_one_outside_every_profile_is_refused(tiny_engines):
    from runtimes.tensorrt_backend import TensorRtRuntime

    rt = TensorRtRuntime(load_artifact(tiny_engines["text-classification"][1]), RuntimeOptions(device="cuda"))

    def feed(batch, seq):
        return {"input_ids": np.ones((batch, seq), np.int64), "attention_mask": np.ones((batch, seq), np.int64)}

    assert [rt.select_profile(feed(1, n)) for n in (1, 64, 65, 128, 129, 512)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(InputError, match=r"outside every optimization profile.*seq<=64: batch 1..64, sequence 1..64"):
        rt.select_profile(feed(65, 8))
    mc = TensorRtRuntime(load_artifact(tiny_engines["multiple-choice"][1]), RuntimeOptions(device="cuda"))
    ids = np.ones((2, 9, 16), np.int64)
    with pytest.raises(InputError, match="num_choices 1..8"):
        mc.select_profile({"input_ids": ids, "attention_mask": ids})


def test_bad_profiles_fail_the_export_naming_the_profile(rtx, tiny_artifacts, tmp_path):
    src = tiny_artifacts["text-classification", "onnxruntime"]
    with pytest.raises(ConfigError, match=r"profile 'seq<=64': axis 'batch' has min/opt/max 1/100/64"):
        build(src, tmp_path / "a", opt_batch=100)
    with pytest.raises(ConfigError, match=r"profile 'seq<=1024': sequence max 1024 exceeds the model's 512"):
        build(src, tmp_path / "b", buckets=(64, 1024))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _cli(*argv):
    env = {**os.environ, "DISTILBERT_DEPLOY_QUIET": "1"}
    return subprocess.run([sys.executable, "-m", "distilbert_deploy.cli", *map(str, argv)], capture_output=True,
                          text=True, env=env, timeout=600)


def test_full_tensorrt_missing_gives_the_two_fix_error(tiny_artifacts, tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("full TensorRT is installed here")
    p = _cli("export-trt", tiny_artifacts["text-classification", "onnxruntime"], "--out", tmp_path / "x")
    assert p.returncode == 2
    assert "missing: tensorrt" in p.stderr and "pypi.nvidia.com" in p.stderr and "TRT_FLAVOR=tensorrt-rtx" in p.stderr
    assert not (tmp_path / "x").exists()


def test_a_target_the_flavor_lacks_lists_the_ones_it_has(rtx, tiny_artifacts, tmp_path):
    p = _cli("export-trt", tiny_artifacts["text-classification", "onnxruntime"], "--out", tmp_path / "x",
             "--flavor", "tensorrt-rtx", "--targets", "sm89,sm90")
    assert p.returncode == 2 and "cannot build for sm90" in p.stderr
    assert "sm75, sm80, sm86, sm89, sm120, sm121" in p.stderr and not (tmp_path / "x").exists()


def test_make_export_trt_builds_the_rtx_artifact(rtx, tmp_path):
    env = {**os.environ, "DISTILBERT_DEPLOY_QUIET": "1"}
    p = subprocess.run(["make", "-s", "export-trt", "MODEL=tiny", "TASK=token-classification", "TRT_FLAVOR=tensorrt-rtx",
                        "TRT_TARGETS=sm89", f"ARTIFACTS_DIR={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                       env=env, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    m = load_artifact(tmp_path / "tiny" / "token-classification" / "tensorrt-rtx-fp16").manifest
    assert m.recipe["compute_capabilities"] == ["sm89"] and "can build for sm89" in p.stdout


def test_parity_and_bench_take_engines_on_the_gpu_with_device_resident_timing(tiny_engines, capsys):
    from benchmarks.bench.config import BenchConfig
    from benchmarks.bench.core import plan_targets
    from benchmarks.bench.runners import make_runner
    from distilbert_deploy.cli import main

    path = tiny_engines["text-classification"][1]
    plan, task, _ = plan_targets(BenchConfig((path,), baselines=("torch-cudagraphs-fp16",), peers=()))
    (spec,) = plan.specs  # the CUDA-graph baseline an engine must beat is CUDA only: skipped on this CPU run
    assert [(t.id, t.reason) for t in plan.skipped] == [("torch-cudagraphs-fp16",
                                                          "fp16 torch runs on CUDA only (--device cuda)")]
    assert (spec.kind, spec.device, task) == ("tensorrt", "cuda", "text-classification")
    timing = make_runner(spec).timing
    assert (timing.timer, timing.includes_copies) == ("torch.cuda.Event.elapsed_time", False)
    # parity runs an engine on its GPU or not at all: without one, or on a GPU it has no target for (an H200's
    # sm90), exit 2 with the reason; on a GPU among its targets it is judged, and passes
    gpu, cc = this_gpu()
    out = path.parent / "parity"
    rc = main(["parity", str(path), "--out", str(out), "--no-manifest"])
    err = capsys.readouterr().err
    if gpu is None:
        assert rc == 2 and "needs an NVIDIA GPU with tensorrt-rtx" in err and "no CUDA GPU is visible here" in err, err
        assert not (out / "parity.json").exists()
    elif cc not in TARGETS:
        assert rc == 2 and "engine built for sm89, sm86 with tensorrt-rtx" in err, err
        assert f"this GPU ({gpu}) is {cc}" in err and not (out / "parity.json").exists(), err
    else:
        report = json.loads((out / "parity.json").read_text())
        (target,) = report["targets"]
        assert rc == 0 and report["passed"] is True and target["id"] == "text-classification-tensorrt-fp16", err


# ---------------------------------------------------------------- on a GPU with TensorRT


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("task", TASKS)
def test_engine_matches_pytorch_with_and_without_cuda_graphs(tiny_tensorrt, tiny_artifacts, task):
    """Parity (fp16 tolerances) runs in tests/test_parity.py; here: raw outputs, eager against CUDA graphs."""
    from runtimes.registry import load_runtime
    from test_runtimes import feeds

    out = tiny_tensorrt(task)
    with load_runtime(tiny_artifacts[task, "torch"]) as ref, \
            load_runtime(out, RuntimeOptions(device="cuda")) as eager, \
            load_runtime(out, RuntimeOptions(device="cuda", cuda_graphs=True)) as graphs:
        for feed in feeds(task == "multiple-choice"):
            want, got = ref.infer(feed), eager.infer(feed)
            again, replay = graphs.infer(feed), graphs.infer(feed)  # capture, then replay
            for name in want:
                cos = float(np.dot(want[name].ravel(), got[name].ravel()) /
                            (np.linalg.norm(want[name]) * np.linalg.norm(got[name])))
                assert got[name].shape == want[name].shape and cos > 0.999, (name, cos)
                np.testing.assert_array_equal(again[name], got[name])
                np.testing.assert_array_equal(replay[name], got[name])
        assert graphs.describe()["captured_graphs"] == len({f["input_ids"].shape for f in feeds(task == "multiple-choice")})


def test_build_report_reads_its_figures_from_the_manifests(rtx, tmp_path):
    from benchmarks import trt_builds

    assert trt_builds.main(["--model", "tiny", "--tasks", "multiple-choice", "--targets", "sm86",
                            "--artifacts", str(tmp_path / "art"), "--out", str(tmp_path / "out")]) == 0
    (row,) = json.loads((tmp_path / "out" / "trt-builds.json").read_text())["rows"]
    m = load_artifact(tmp_path / "art" / "tiny" / "multiple-choice" / "tensorrt-rtx-fp16").manifest
    assert row["engine_bytes"] == m.recipe["engine_bytes"] and row["build_seconds"] == m.recipe["build_seconds"]
    assert row["targets"] == ["sm86"] and row["fp32_islands"] == 9
    md = (tmp_path / "out" / "trt-builds.md").read_text()
    assert f"| multiple-choice | {row['build_seconds']:.1f} |" in md
