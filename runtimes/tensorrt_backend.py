"""TensorRT engine artifacts (backend 'tensorrt'; full TensorRT or TensorRT-RTX, as the manifest says).

load() checks everything it can before TensorRT deserializes, each with its own error naming the rebuild: the
flavor's module, a CUDA GPU, this GPU among the engine's compute capabilities, the TensorRT version, and
TensorRT's own engine header check. A None from deserialize_cuda_engine becomes an error quoting TensorRT's log.

Device buffers, the stream, events and CUDA graphs are torch's: its caching allocator, torch.cuda.Stream and
torch.cuda.CUDAGraph are mature, the project already depends on torch for the reference (extra `export`), and the
bench's CUDA-event timing uses the same objects. cuda-python would add a dependency and raw handle management
for no gain here. Every shape runs in the tightest profile that covers it; with RuntimeOptions(cuda_graphs=True)
one graph per (profile, shape) is captured and replayed."""
from __future__ import annotations

import atexit
import importlib.util
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifact import cache_root
from .base import Runtime
from .errors import ArtifactMismatch, BackendUnavailable, ConfigError, DeployError, InputError
from .tensorrt_flavor import MODULES, TWO_FIXES, sm_number

MAX_GRAPHS = 32  # cuda_graphs: captured (profile, shape) graphs kept, least recently used dropped first
_OPEN: "weakref.WeakSet[TensorRtRuntime]" = weakref.WeakSet()


@atexit.register
def _close_open_runtimes() -> None:
    """Engines left open at exit are released here, before CUDA tears down (atexit runs first)."""
    for runtime in list(_OPEN):
        runtime.close()


def rebuild_command(manifest, flavor: str | None = None) -> str:
    """The make command that rebuilds this engine, with its own flavor or `flavor`."""
    flavor = flavor or manifest.recipe.get("flavor")
    name = manifest.source.get("name") or "MODEL"
    cmd = f"make export-trt MODEL={name} TASK={manifest.task} TRT_FLAVOR={flavor}"
    if flavor == "tensorrt-rtx":
        cmd += " TRT_TARGETS=<this GPU, e.g. sm89>"
    return f"`{cmd}` (on this machine{', with its GPU' if flavor == 'tensorrt' else ''})"


def _rebuild_for(manifest, cc: str | None) -> str:
    """The rebuild that can target this GPU: RTX where it has the target, else full TensorRT on the GPU itself."""
    if manifest.recipe.get("flavor") == "tensorrt-rtx":
        from .tensorrt_flavor import Flavor

        rtx = Flavor("tensorrt-rtx").targets()
        if cc not in rtx:
            return (f"TensorRT-RTX has no {cc} target (it builds for {', '.join(rtx)}): build with full TensorRT on "
                    f"this GPU, {rebuild_command(manifest, 'tensorrt')}")
    return f"rebuild for it with {rebuild_command(manifest)}"


@dataclass(frozen=True)
class HostFacts:
    """What this machine offers a TensorRT engine."""
    module: bool  # the manifest's flavor module is importable
    version: str | None  # its version
    gpu: str | None  # the CUDA GPU's name; None: no GPU visible
    compute_capability: str | None  # e.g. sm89


def host_facts(flavor: str) -> HostFacts:
    module = MODULES.get(flavor, "tensorrt")
    has = importlib.util.find_spec(module) is not None
    version = importlib.import_module(module).__version__ if has else None
    gpu = cc = None
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            gpu, major_minor = torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0)
            cc = f"sm{major_minor[0]}{major_minor[1]}"
    return HostFacts(has, version, gpu, cc)


def preflight(manifest, host: HostFacts) -> None:
    """Raise the first reason this engine cannot run on `host`, in the order a user would fix them."""
    r = manifest.recipe
    flavor, built_with, targets = r.get("flavor"), r.get("tensorrt_version"), r.get("compute_capabilities") or []
    needs = f"an NVIDIA GPU with {flavor} {built_with} ({', '.join(targets)})"
    if flavor not in MODULES:
        raise ArtifactMismatch(f"the manifest names TensorRT flavor {flavor!r}; expected one of {', '.join(MODULES)}. "
                               f"Fix: rebuild with {rebuild_command(manifest)}")
    if not host.module:
        raise BackendUnavailable("tensorrt", missing=[MODULES[flavor]], detail=f"this engine needs {needs}",
                                 hint=TWO_FIXES if flavor == "tensorrt" else "pip install tensorrt-rtx-cu13 "
                                      "(make venv EXTRAS=...,tensorrt-rtx)")
    if host.gpu is None:
        raise BackendUnavailable("tensorrt", detail=f"this engine needs {needs}, and no CUDA GPU is visible here "
                                 f"(torch.cuda.is_available() is False)",
                                 hint="run it on such a GPU; `distilbert-deploy inspect` reads the engine facts anywhere")
    level = r.get("hardware_compatibility", "none")
    fits = sm_number(host.compute_capability) >= 80 if level == "ampere+" else host.compute_capability in targets
    if not fits:
        raise ArtifactMismatch(f"engine built for {', '.join(targets)}{' (ampere+)' if level == 'ampere+' else ''} "
                               f"with {flavor} {built_with}; this GPU ({host.gpu}) is {host.compute_capability}. "
                               f"Fix: {_rebuild_for(manifest, host.compute_capability)}")
    if host.version != built_with and not compatible_version(r, host.version):
        raise ArtifactMismatch(f"engine built with {flavor} {built_with}; this machine has {host.version}, and "
                               f"TensorRT engines do not load across versions (it was not built version-compatible). "
                               f"Fix: rebuild with {rebuild_command(manifest)}, or install {flavor}=={built_with}")


def compatible_version(recipe: dict, have: str | None) -> bool:
    """Version-compatible engines load in the same major version, at the build version or later."""
    if not recipe.get("version_compatible") or have is None:
        return False
    built = tuple(int(x) for x in recipe["tensorrt_version"].split(".")[:3])
    now = tuple(int(x) for x in have.split(".")[:3])
    return built[0] == now[0] and now >= built


def covering(profiles: list[dict], shape: dict) -> int | None:
    """Index of the tightest profile (smallest sequence bound) that covers every axis of `shape`."""
    fits = [i for i, p in enumerate(profiles) if all(p[a]["min"] <= n <= p[a]["max"] for a, n in shape.items())]
    return min(fits, key=lambda i: (profiles[i]["sequence"]["max"], profiles[i]["batch"]["max"])) if fits else None


def runtime_cache_path(engine_sha256: str) -> Path:
    """Where a GPU run saves the RTX runtime cache of this engine (the artifact itself is never rewritten)."""
    return cache_root() / "tensorrt-rtx" / f"{engine_sha256}.runtime.cache"


def saved_runtime_cache(engine_sha256: str) -> Path | None:
    path = runtime_cache_path(engine_sha256)
    return path if path.is_file() and path.stat().st_size else None


class TensorRtRuntime(Runtime):
    backend = "tensorrt"

    def select_profile(self, feed: dict[str, np.ndarray]) -> int:
        """The tightest profile covering the feed's shape; InputError before TensorRT sees an uncovered one."""
        spec = self.manifest.inputs[0]
        shape = dict(zip(spec.dims, feed[spec.name].shape))
        profiles = self.manifest.recipe["profiles"]
        idx = covering(profiles, shape)
        if idx is None:
            have = "; ".join(f"{p['name']}: " + ", ".join(f"{a} {p[a]['min']}..{p[a]['max']}" for a in shape)
                             for p in profiles)
            raise InputError(f"input shape {shape} is outside every optimization profile of this engine ({have}). "
                             f"Fix: split the batch or truncate, or rebuild with wider --buckets / --max-batch")
        return idx

    def _load(self) -> None:
        m = self.manifest
        if self.options.precision is not None and self.options.precision != m.precision:
            raise ConfigError(f"this tensorrt artifact is {m.precision}; precision '{self.options.precision}' was "
                              f"asked for. Fix: omit the precision")
        if self.options.device != "cuda":
            raise BackendUnavailable("tensorrt", detail=f"device '{self.options.device}' was asked for; TensorRT "
                                     f"engines run on an NVIDIA GPU only", hint="pass --device cuda "
                                     "(RuntimeOptions(device='cuda'))")
        preflight(m, host_facts(m.recipe.get("flavor")))
        import torch

        from .tensorrt_flavor import Flavor

        self.flavor = Flavor(m.recipe["flavor"])
        data = self.artifact.model_path.read_bytes()
        validity = self.flavor.engine_validity(data)
        if validity.checked and not validity.valid:
            raise ArtifactMismatch(f"TensorRT's engine check rejects '{self.artifact.model_path}': "
                                   f"{', '.join(validity.diagnostics) or 'invalid'}. Fix: rebuild with "
                                   f"{rebuild_command(m)}")
        runtime = self.flavor.runtime()
        if m.recipe.get("version_compatible"):
            runtime.engine_host_code_allowed = True
        mark = self.flavor.logger.mark()
        self.engine = runtime.deserialize_cuda_engine(data)
        if self.engine is None:  # TensorRT returns None and only logs why
            why = " | ".join(msg for _, msg in self.flavor.logger.since(mark, "ERROR", "INTERNAL_ERROR")) or "no reason logged"
            raise ArtifactMismatch(f"TensorRT could not deserialize '{self.artifact.model_path}': {why}. "
                                   f"Fix: rebuild with {rebuild_command(m)}")
        self.cache_loaded = self._runtime_cache_bytes()
        self.context, self.rt_cache = self.flavor.execution_context(self.engine, self.cache_loaded)
        if self.context is None:
            why = " | ".join(msg for _, msg in self.flavor.logger.since(mark, "ERROR", "INTERNAL_ERROR"))
            raise BackendUnavailable("tensorrt", detail=f"no execution context: {why or 'no reason logged'}",
                                     hint="check free GPU memory (nvidia-smi)")
        trt = self.flavor.trt
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = torch.cuda.Stream()
        self.active_profile: int | None = None
        self.graphs: OrderedDict = OrderedDict()
        self.torch = torch
        _OPEN.add(self)

    def _runtime_cache_bytes(self) -> bytes:
        m = self.manifest
        if m.recipe.get("flavor") != "tensorrt-rtx":
            return b""
        saved = saved_runtime_cache(m.files[m.model_file])
        path = saved or self.artifact.path / m.recipe.get("cache", {}).get("file", "runtime.cache")
        return path.read_bytes() if path.is_file() else b""

    def device_feed(self, feed: dict[str, np.ndarray]) -> tuple[int, dict]:
        """(profile index, the feed as CUDA tensors): what run_device takes. Checked like infer."""
        from .base import check_feed

        check_feed(self.artifact, feed)
        return self._to_device(feed)

    def _to_device(self, feed: dict[str, np.ndarray]) -> tuple[int, dict]:
        idx = self.select_profile(feed)
        return idx, {k: self.torch.from_numpy(np.ascontiguousarray(v)).to("cuda") for k, v in feed.items()}

    def run_device(self, idx: int, inputs: dict) -> dict:
        """Run on device-resident inputs; returns device-resident fp32 outputs (queued on self.stream)."""
        torch = self.torch
        key = (idx, tuple(tuple(t.shape) for t in inputs.values()))
        with torch.cuda.stream(self.stream):
            if self.options.cuda_graphs and key in self.graphs:
                graph, static_in, static_out = self.graphs[key]
                self.graphs.move_to_end(key)
                for name, t in inputs.items():
                    static_in[name].copy_(t)
                graph.replay()
                return static_out
            outputs = self._bind(idx, inputs)
            self._enqueue()
            if self.options.cuda_graphs:  # first run of this shape done eagerly (TensorRT's shape setup); capture now
                capturable = getattr(self.context, "is_stream_capturable", None)
                if capturable is not None and not capturable(self.stream.cuda_stream):
                    raise BackendUnavailable("tensorrt", detail="this engine's execution context cannot be captured "
                                             "into a CUDA graph", hint="run without cuda_graphs (--cuda-graphs off)")
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=self.stream):
                    self._enqueue()
                self.graphs[key] = (graph, inputs, outputs)
                while len(self.graphs) > MAX_GRAPHS:
                    self.graphs.popitem(last=False)
            return outputs

    def _bind(self, idx: int, inputs: dict) -> dict:
        torch, ctx = self.torch, self.context
        if self.active_profile != idx:
            ctx.set_optimization_profile_async(idx, self.stream.cuda_stream)
            self.active_profile = idx
        for name, t in inputs.items():
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        outputs = {}
        for name in self.output_names:
            outputs[name] = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
            ctx.set_tensor_address(name, outputs[name].data_ptr())
        return outputs

    def _enqueue(self) -> None:
        mark = self.flavor.logger.mark()
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            why = " | ".join(msg for _, msg in self.flavor.logger.since(mark, "ERROR", "INTERNAL_ERROR"))
            raise DeployError(f"TensorRT execute_async_v3 failed: {why or 'no reason logged'}")

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        idx, inputs = self._to_device(feed)  # Runtime.infer has checked the feed
        outputs = self.run_device(idx, inputs)
        self.stream.synchronize()
        return {name: t.cpu().numpy() for name, t in outputs.items()}

    def _describe(self) -> dict:
        r = self.manifest.recipe
        out = {"flavor": r.get("flavor"), "tensorrt": r.get("tensorrt_version"),
               "compute_capabilities": r.get("compute_capabilities"), "profiles": [p["name"] for p in r.get("profiles", [])],
               "cuda_graphs": self.options.cuda_graphs, "engine_bytes": r.get("engine_bytes")}
        if self.loaded:
            out.update(gpu=self.torch.cuda.get_device_name(0), layers=self.engine.num_layers,
                       captured_graphs=len(self.graphs), runtime_cache_bytes=len(self.cache_loaded))
        return out

    def _close(self) -> None:
        _OPEN.discard(self)
        self.torch.cuda.synchronize()
        self.graphs.clear()
        if self.rt_cache is not None:
            self._save_runtime_cache()
        # engine and context before CUDA teardown: never leave them to interpreter exit
        del self.context, self.engine, self.rt_cache
        self.flavor.release()

    def _save_runtime_cache(self) -> None:
        from .artifact import write_file_atomic

        data = bytes(self.rt_cache.serialize())
        if data and data != self.cache_loaded:
            m = self.manifest
            path = runtime_cache_path(m.files[m.model_file])
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomic(path, data)
