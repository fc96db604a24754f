"""ONNX fp32 artifact -> TensorRT fp16 engine artifact (strongly typed, fp32 islands, bucketed profiles).

One code path for both flavors (runtimes/tensorrt_flavor.py holds their differences): full TensorRT builds on the
GPU it will run on; TensorRT-RTX builds ahead of time, with no GPU, for named RTX compute capabilities. The
artifact keeps the fp16 ONNX the engine was built from, the builder log, the timing cache (full) or runtime
cache (RTX), and a manifest that says what the engine needs to run and how to rebuild it with NVIDIA's tools."""
from __future__ import annotations

import shlex
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from runtimes.artifact import (Manifest, copy_side_files, derived_manifest, finalize, library_versions, load_artifact,
                               sha256_file, staging_dir, write_file_atomic, write_text_atomic)
from runtimes.errors import BackendUnavailable, ConfigError, DeployError, ExportError
from runtimes.progress import console, step
from runtimes.tensorrt_flavor import DEFAULT_FLAVOR, RTX_DEFAULT_TARGETS, Flavor, check_flavor, sm

from .tensorrt_fp16 import check_islands, convert
from .tensorrt_profiles import DEFAULT_BUCKETS, Profile, bucket_profiles, tweet_lengths

ENGINE_FILE = "model.engine"
ONNX_FILE = "model.fp16.onnx"
LOG_FILE = "build.log"
CACHE_FILES = {"tensorrt": "timing.cache", "tensorrt-rtx": "runtime.cache"}
HW_LEVELS = {"none": "NONE", "ampere+": "AMPERE_PLUS"}


@dataclass(frozen=True)
class TrtExportConfig:
    src: Path  # an onnxruntime fp32 artifact
    out: Path
    flavor: str = DEFAULT_FLAVOR
    targets: tuple[str, ...] = ()  # RTX: compute capabilities (default RTX_DEFAULT_TARGETS); full: the build GPU
    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    opt_batch: int | None = None  # None: the source manifest's
    max_batch: int | None = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"  # full TensorRT: "ampere+" builds one engine for every sm80+ GPU

    def __post_init__(self):
        check_flavor(self.flavor)
        if Path(self.src).absolute() == Path(self.out).absolute():
            raise ConfigError(f"--out '{self.out}' is the source artifact; choose another directory")
        if self.hardware_compatibility not in HW_LEVELS:
            raise ConfigError(f"unknown hardware compatibility '{self.hardware_compatibility}'. Expected one of: "
                              f"{', '.join(HW_LEVELS)}")
        if self.hardware_compatibility != "none" and self.flavor != "tensorrt":
            raise ConfigError("--hardware-compatibility is a full TensorRT option; TensorRT-RTX engines name their "
                              "targets. Fix: --targets sm80,sm86,... with --flavor tensorrt-rtx")


def default_out(src: Path, flavor: str) -> Path:
    return Path(src).parent / f"{flavor}-fp16"


def resolve_targets(flavor: Flavor, cfg: TrtExportConfig) -> tuple[tuple[str, ...], dict | None]:
    """(compute capabilities the engine is for, the build GPU or None). Raises before any work is done."""
    if flavor.rtx:
        targets = cfg.targets or RTX_DEFAULT_TARGETS
        flavor.check_targets(targets)
        return targets, None
    gpu = build_gpu()
    if cfg.targets and cfg.targets != (gpu["compute_capability"],):
        raise ConfigError(f"full TensorRT builds for the GPU it runs on ({gpu['name']}, {gpu['compute_capability']}); "
                          f"targets {', '.join(cfg.targets)} were asked for. Fix: build on that GPU, use "
                          f"--hardware-compatibility ampere+ (any sm80+), or --flavor tensorrt-rtx for RTX GPUs")
    return (gpu["compute_capability"],), gpu


def build_gpu() -> dict:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise BackendUnavailable("tensorrt", missing=["torch"], hint="pip install 'distilbert-deploy[export]'")
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("tensorrt", detail="full TensorRT builds on the NVIDIA GPU the engine will run on, "
                                 "and no CUDA GPU is visible here",
                                 hint="build on the target GPU, or TRT_FLAVOR=tensorrt-rtx for RTX GPUs "
                                      "(builds without a GPU)")
    return {"name": torch.cuda.get_device_name(0), "compute_capability": sm(*torch.cuda.get_device_capability(0))}


def preflight(cfg: TrtExportConfig) -> tuple[Flavor, tuple[str, ...], dict | None]:
    """The checks that need no source artifact: the flavor's module, its targets, the build GPU."""
    flavor = Flavor(cfg.flavor)
    targets, gpu = resolve_targets(flavor, cfg)
    return flavor, targets, gpu


def export_trt(cfg: TrtExportConfig) -> Manifest:
    """Build the engine artifact at cfg.out, atomically. Returns its manifest."""
    from runtimes.tasks import load_tokenizer

    from .openvino_export import onnx_parent

    flavor, targets, gpu = preflight(cfg)
    art = onnx_parent(Path(cfg.src), built="a TensorRT engine")
    profiles = bucket_profiles(art.manifest, cfg.buckets, tweet_lengths(load_tokenizer(art.path)),
                               opt_batch=cfg.opt_batch, max_batch=cfg.max_batch)
    previous = previous_cache(Path(cfg.out), art.manifest, cfg.flavor, flavor.version)
    with staging_dir(cfg.out) as tmp:
        with step("convert to fp16 with fp32 islands (LayerNorm, Softmax, reductions, Pow/Sqrt/Erf, I/O)"):
            islands = convert(art.model_path, tmp / ONNX_FILE)
        mark = flavor.logger.mark()
        flavor.logger.verbose = True
        try:
            built = build_engine(flavor, tmp, islands, profiles, targets, previous, cfg)
        finally:
            flavor.logger.verbose = False
            records = flavor.logger.since(mark)
            write_build_log(tmp / LOG_FILE, records)
        copy_side_files(art, tmp)
        recipe = {
            "format": "tensorrt-engine", "flavor": cfg.flavor, "tensorrt_version": flavor.version,
            "cuda_version": flavor.cuda_version, "compute_capabilities": list(targets), "build_gpu": gpu,
            "hardware_compatibility": cfg.hardware_compatibility, "version_compatible": cfg.version_compatible,
            "strongly_typed": True, "onnx": ONNX_FILE, "profiles": [p.to_dict() for p in profiles],
            "fp32_islands": {**islands, "checked_layers": built["checked_layers"]},
            "build_seconds": built["seconds"], "engine_bytes": built["bytes"],
            "build_log": {"file": LOG_FILE, "warnings": sum(r[0] == "WARNING" for r in records),
                          "errors": sum(r[0] in ("ERROR", "INTERNAL_ERROR") for r in records)},
            "cache": built["cache"], "progress_monitor": built["progress"],
            "reproduce": reproduce_commands(cfg.flavor, profiles, art.manifest, targets),
        }
        manifest = derived_manifest(art, backend="tensorrt", precision="fp16", model_file=ENGINE_FILE, recipe=recipe,
                                    shape_profile=overall(profiles),
                                    versions={**library_versions("onnx", "onnxruntime"),
                                              cfg.flavor: flavor.version})  # the flavor is its distribution's name
        return finalize(tmp, manifest)


def build_engine(flavor: Flavor, tmp: Path, islands: dict, profiles, targets, previous: dict, cfg) -> dict:
    trt = flavor.trt
    builder = trt.Builder(flavor.logger)
    network = flavor.network(builder)
    parser = trt.OnnxParser(network, flavor.logger)
    with step("parse the fp16 graph (strongly typed network)"):
        if not parser.parse_from_file(str(tmp / ONNX_FILE)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ExportError(f"TensorRT {flavor.version} cannot parse the fp16 graph: {'; '.join(errors[:3])}. "
                              f"Nothing was written")
    checked = check_islands(network, trt, islands)
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the layer table goes into build.log
    flavor.set_targets(config, targets)
    if cfg.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if cfg.hardware_compatibility != "none":
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, HW_LEVELS[cfg.hardware_compatibility])
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    for p in profiles:
        add_profile(builder, config, p, inputs, flavor)
    cache_in = previous.get("bytes", b"")
    flavor.set_timing_cache(config, cache_in)
    monitor = progress_monitor(trt)
    has_progress = monitor is not None and flavor.set_progress(config, monitor.trt_monitor)
    t0 = time.perf_counter()
    with monitor or nullcontext():
        plan = builder.build_serialized_network(network, config)
    seconds = round(time.perf_counter() - t0, 2)
    if plan is None:
        errors = [m for s, m in flavor.logger.records if s in ("ERROR", "INTERNAL_ERROR")][-3:]
        raise ExportError(f"TensorRT {flavor.version} could not build the engine: {' | '.join(errors) or 'no reason logged'}. "
                          f"Nothing was written")
    data = bytes(plan)
    write_file_atomic(tmp / ENGINE_FILE, data)
    cache_out = flavor.timing_cache(config)
    cache_bytes = cache_in if cache_out is None else cache_out
    write_file_atomic(tmp / CACHE_FILES[cfg.flavor], cache_bytes)
    console().print(f"[green]✓[/] built {ENGINE_FILE}: {len(data) / 2**20:.1f} MiB in {seconds:.1f}s "
                    f"for {', '.join(targets)}")
    cache = {"kind": "runtime" if flavor.rtx else "timing", "file": CACHE_FILES[cfg.flavor], "bytes": len(cache_bytes),
             "reused_from": {k: previous[k] for k in ("path", "sha256")} if "path" in previous else None,
             "note": ("TensorRT-RTX does no build-time autotuning; its runtime cache holds the kernels JIT-compiled "
                      "on an RTX GPU at first inference, so it is empty until a run on one has filled it"
                      if flavor.rtx else "fed to the builder; timing entries of earlier builds are reused")}
    if previous.get("not_reused"):
        cache["not_reused"] = previous["not_reused"]
    return {"seconds": seconds, "bytes": len(data), "checked_layers": checked, "cache": cache,
            "progress": has_progress}


def add_profile(builder, config, profile: Profile, inputs: list[str], flavor: Flavor) -> None:
    p = builder.create_optimization_profile()
    dims = tuple(profile.axes)
    for name in inputs:
        p.set_shape(name, *(profile.shape(dims, i) for i in range(3)))
    mark = flavor.logger.mark()
    if config.add_optimization_profile(p) < 0:
        why = " | ".join(m for _, m in flavor.logger.since(mark, "ERROR", "INTERNAL_ERROR")) or "no reason logged"
        raise ExportError(f"optimization profile '{profile.name}' ({profile.to_dict()}) violates TensorRT's shape "
                          f"constraints: {why}. Nothing was written. Fix: --buckets / --opt-batch / --max-batch")


def overall(profiles) -> dict:
    """The manifest's shape_profile: what some profile accepts (min over mins, max over maxes)."""
    axes = profiles[0].axes
    return {k: {a: f(p.axes[a][i] for p in profiles) for a in axes}
            for k, i, f in (("min", 0, min), ("opt", 1, min), ("max", 2, max))}


def previous_cache(out: Path, source: Manifest, flavor: str, version: str) -> dict:
    """The cache of the artifact this build replaces, when it was built from the same model with the same flavor
    and version; {} when there is none. A runtime cache that an RTX GPU run saved beside it
    ($DISTILBERT_DEPLOY_CACHE/tensorrt-rtx/<engine sha256>.runtime.cache) wins over the one in the artifact."""
    if not (out / "manifest.json").is_file():
        return {}
    try:
        prev = load_artifact(out)
    except DeployError as e:
        return {"not_reused": f"the artifact at {out} failed its check ({str(e)[:160]})"}
    m = prev.manifest
    same = (m.backend == "tensorrt" and m.recipe.get("flavor") == flavor and m.recipe.get("tensorrt_version") == version
            and m.source.get("sha256") == source.source.get("sha256") and m.task == source.task)
    name = CACHE_FILES[flavor]
    if not same or name not in m.files:
        return {"not_reused": f"the artifact at {out} was not built from this model with {flavor} {version}"}
    from runtimes.tensorrt_backend import saved_runtime_cache

    path = prev.path / name
    if flavor == "tensorrt-rtx" and (saved := saved_runtime_cache(m.files[m.model_file])) is not None:
        path = saved
    return {"path": str(path.absolute()), "sha256": sha256_file(path), "bytes": path.read_bytes()}


def progress_monitor(trt):
    """A rich progress bar driven by TensorRT's IProgressMonitor (one bar per build phase)."""
    if not hasattr(trt, "IProgressMonitor"):
        return None
    from rich.progress import BarColumn, Progress, TextColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    console=console(), transient=True)

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.tasks = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.tasks[phase_name] = bars.add_task(phase_name, total=max(num_steps, 1))

        def step_complete(self, phase_name, step):
            if phase_name in self.tasks:
                bars.update(self.tasks[phase_name], completed=step + 1)
            return True  # keep building

        def phase_finish(self, phase_name):
            if (task := self.tasks.pop(phase_name, None)) is not None:
                bars.remove_task(task)

    bars.trt_monitor = Monitor()
    return bars


def write_build_log(path: Path, records) -> None:
    write_text_atomic(path, "".join(f"[{sev[0]}] {msg}\n" for sev, msg in records))


def reproduce_commands(flavor: str, profiles, source: Manifest, targets) -> dict:
    """The same build with NVIDIA's own tools, run from the artifact directory."""
    names = [t.name for t in source.inputs]
    dims = tuple(profiles[0].axes)
    poly = (["env", "POLYGRAPHY_USE_TENSORRT_RTX=1"] if flavor == "tensorrt-rtx" else []) + \
        ["polygraphy", "convert", ONNX_FILE, "--convert-to", "trt", "--strongly-typed"]
    trtexec = ["trtexec", f"--onnx={ONNX_FILE}", "--stronglyTyped"]
    for p in profiles:
        for flag, i in (("--trt-min-shapes", 0), ("--trt-opt-shapes", 1), ("--trt-max-shapes", 2)):
            poly += [flag, *(f"{n}:{list(p.shape(dims, i))}".replace(" ", "") for n in names)]
        for flag, i in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            trtexec.append(f"{flag}=" + ",".join(f"{n}:{'x'.join(map(str, p.shape(dims, i)))}" for n in names))
    out = {"polygraphy": shlex.join(poly + ["-o", ENGINE_FILE])}
    if flavor == "tensorrt":
        out["trtexec"] = shlex.join(trtexec + [f"--timingCacheFile={CACHE_FILES[flavor]}", f"--saveEngine={ENGINE_FILE}"])
    else:
        out["note"] = (f"polygraphy does not set RTX compute capabilities: its engine targets TensorRT-RTX's default "
                       f"set, this one {', '.join(targets)}")
    return out


def describe_build(m: Manifest) -> str:
    r = m.recipe
    return (f"wrote tensorrt fp16 artifact ({r['flavor']} {r['tensorrt_version']}, {', '.join(r['compute_capabilities'])})"
            f": engine {r['engine_bytes'] / 2**20:.1f} MiB built in {r['build_seconds']:.1f}s, "
            f"{len(r['profiles'])} profiles ({', '.join(p['name'] for p in r['profiles'])}), "
            f"{len(r['fp32_islands']['nodes'])} fp32 islands, {r['build_log']['warnings']} builder warnings")

