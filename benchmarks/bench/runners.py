"""What runs: one Runner per benchmark target. Artifacts dispatch through runtimes.registry (any backend it
knows, present or future, with no change here); the PyTorch baselines come from the model source recorded in
an artifact's manifest; peers are the plain tools run the way their docs show. Heavy modules are imported in
load() only, so this module imports in any venv that has numpy (the peer workers' included)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import TIMINGS
from .timing import timed_call

TIMER = "time.perf_counter_ns"
KINDS = ("artifact", "tensorrt", "torch", "ort-default", "ort-qdynamic", "ov-nncf", "optimum-ort", "optimum-ov",
         "optimum-ortq")
MODEL_SUFFIXES = (".onnx", ".onnx.data", ".ort", ".xml", ".bin", ".safetensors", ".engine", ".plan")


@dataclass(frozen=True)
class TargetSpec:
    """One thing benchmarked. JSON-able: it crosses to subprocess workers as is."""
    id: str
    kind: str
    artifact: str  # the artifact dir (torch baselines and peers: the artifact whose source / ONNX they use)
    precision: str | None = None
    compile: bool | str = False  # torch: torch.compile (a str: its mode, e.g. "reduce-overhead" = CUDA graphs)
    device: str = "cpu"
    threads: int | None = None
    launcher: str = "inprocess"  # or "subprocess"
    python: str | None = None  # interpreter of the subprocess worker (peers: .venv-optimum/bin/python)
    timing: str = "auto"  # auto, end-to-end (host->device->host copies timed), device (CUDA events, no copies)
    calibration_size: int = 300  # ov-nncf: train tweets to calibrate on (nncf's default subset size)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TimingMode:
    timer: str
    includes_copies: bool | None  # None: no device, nothing to copy
    sync: bool  # CUDA synchronize / events


def select_timing(device: str, requested: str = "auto", *, device_timer: bool = False) -> TimingMode:
    """CPU: perf_counter_ns around the call. CUDA: 'end-to-end' (default) = perf_counter_ns around copy in, run,
    copy out, with torch.cuda.synchronize(); 'device' = inputs already on the GPU, CUDA events around the forward
    pass only (runners that can: device_timer=True, i.e. the torch baselines)."""
    from runtimes.errors import ConfigError

    if requested not in TIMINGS:
        raise ConfigError(f"unknown timing mode '{requested}'. Expected one of: {', '.join(TIMINGS)}")
    if device == "cpu":
        if requested == "device":
            raise ConfigError("timing mode 'device' (CUDA events, copies excluded) needs --device cuda. "
                              "Fix: omit --timing on CPU")
        return TimingMode(TIMER, None, False)
    if requested == "device":
        if not device_timer:
            raise ConfigError("timing mode 'device' is only implemented for the torch CUDA baselines; runtimes "
                              "take host arrays, so their timing includes copies. Fix: --timing end-to-end")
        return TimingMode("torch.cuda.Event.elapsed_time", False, True)
    return TimingMode(f"{TIMER} + torch.cuda.synchronize()" if device_timer else TIMER, True, device_timer)


def files_size(root: Path, names=None) -> int:
    root = Path(root)
    names = names if names is not None else [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sum((root / n).stat().st_size for n in names if n.endswith(MODEL_SUFFIXES) and (root / n).is_file())


class Runner:
    """load() (heavy) -> input_dims -> call(feed) -> elapsed ns -> describe() -> close()."""

    def __init__(self, spec: TargetSpec):
        self.spec = spec
        self.timing = select_timing(spec.device, spec.timing, device_timer=False)

    def load(self) -> None: ...

    @property
    def input_dims(self) -> dict[str, tuple]:
        from runtimes.artifact import read_manifest

        return {t.name: tuple(t.dims) for t in read_manifest(self.spec.artifact).inputs}

    def prepare(self, feed):
        """Per-feed setup done once, outside the timed region (e.g. a device copy in 'device' timing)."""
        return feed

    def infer(self, feed): ...

    def call(self, feed) -> int:
        return timed_call(self.infer, feed)[1]

    def describe(self) -> dict:
        return {}

    def model_size_bytes(self) -> int | None:
        return None

    def close(self) -> None: ...


class ArtifactRunner(Runner):
    """Any artifact, through runtimes.registry (Runtime.infer: the feed check is part of what is timed)."""

    def load(self):
        from runtimes.base import RuntimeOptions
        from runtimes.registry import open_runtime

        s = self.spec
        self.runtime = open_runtime(s.artifact, RuntimeOptions(device=s.device, precision=s.precision,
                                                                threads=s.threads))
        self.runtime.load()

    def infer(self, feed):
        return self.runtime.infer(feed)

    def describe(self):
        return self.runtime.describe()

    def model_size_bytes(self):
        return files_size(Path(self.spec.artifact), list(self.runtime.manifest.files))

    def close(self):
        self.runtime.close()


class TensorRtRunner(ArtifactRunner):
    """TensorRT engines: each feed is copied to the GPU once, outside the timed region (device-resident inputs),
    and each call is timed with CUDA events recorded on the engine's stream around its enqueue
    (execute_async_v3, or the CUDA graph replay). Host copies are not timed; the report says so."""

    def __init__(self, spec):
        super().__init__(spec)
        self.timing = TimingMode("torch.cuda.Event.elapsed_time", False, True)

    def load(self):
        from runtimes.base import RuntimeOptions
        from runtimes.registry import open_runtime

        s = self.spec
        self.runtime = open_runtime(s.artifact, RuntimeOptions(device="cuda", precision=s.precision))
        self.runtime.load()
        torch = self.runtime.torch
        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def prepare(self, feed):
        return self.runtime.device_feed(feed)  # (profile, CUDA tensors)

    def call(self, prepared) -> int:
        profile, inputs = prepared
        self.start.record(self.runtime.stream)
        self.runtime.run_device(profile, inputs)
        self.end.record(self.runtime.stream)
        self.end.synchronize()
        return int(self.start.elapsed_time(self.end) * 1e6)

    def describe(self):
        return {**self.runtime.describe(), "inputs": "device-resident (copied once per feed, untimed)",
                "timing": "CUDA events on the engine's stream around the enqueue; host copies excluded"}

    def model_size_bytes(self):
        return self.runtime.manifest.recipe["engine_bytes"]


class TorchRunner(Runner):
    """PyTorch reference from the artifact's recorded source model (same loader and weights check as parity):
    eager fp32, eager bf16 (or fp16 on CUDA), optionally torch.compile."""

    def __init__(self, spec):
        super().__init__(spec)
        self.timing = select_timing(spec.device, spec.timing, device_timer=True)

    def load(self):
        import torch

        from benchmarks.parity.runner import reference_for
        from runtimes.artifact import load_artifact
        from runtimes.torch_backend import checked_dtype

        s = self.spec
        dtype = checked_dtype(torch, s.device, s.precision or "fp32")  # the torch runtime's own rule
        if s.threads:
            torch.set_num_threads(s.threads)
        self.torch = torch
        self.artifact = load_artifact(s.artifact, verify=False)
        loaded = reference_for(self.artifact.manifest)
        self.source = loaded.name
        model = loaded.model.to(device=s.device, dtype=dtype).eval()
        self.param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        mode = s.compile if isinstance(s.compile, str) else None
        self.model = torch.compile(model, mode=mode) if s.compile else model
        self.outputs = [t.name for t in self.artifact.manifest.outputs]
        if self.timing.sync:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.reset_peak_memory_stats()

    def prepare(self, feed):
        if self.timing.includes_copies is False:  # device timing: copy once, outside the timed region
            return {k: self.torch.from_numpy(v).to(self.spec.device) for k, v in feed.items()}
        return feed

    def infer(self, feed):
        from runtimes.base import check_feed

        torch = self.torch
        check_feed(self.artifact, feed)
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v).to(self.spec.device) for k, v in feed.items()})
        return {n: out[n].float().cpu().numpy() for n in self.outputs}

    def call(self, feed) -> int:
        torch = self.torch
        if self.timing.includes_copies is False:
            with torch.inference_mode():
                self.start.record()
                self.model(**feed)
                self.end.record()
            torch.cuda.synchronize()
            return int(self.start.elapsed_time(self.end) * 1e6)
        t0 = time.perf_counter_ns()
        self.infer(feed)
        if self.timing.sync:
            torch.cuda.synchronize()
        return time.perf_counter_ns() - t0

    def describe(self):
        torch = self.torch
        d = {"backend": "torch", "source": self.source, "precision": self.spec.precision or "fp32",
             "compile": self.spec.compile, "torch": torch.__version__, "threads": torch.get_num_threads(),
             "interop_threads": torch.get_num_interop_threads(), "attn_implementation": "eager"}
        if self.spec.device == "cuda":
            d.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda)
        return d

    def model_size_bytes(self):
        return self.param_bytes  # in-memory parameters at the run precision (no file of its own)

    def gpu_peak_bytes(self):
        return self.torch.cuda.max_memory_allocated() if self.spec.device == "cuda" else None

    def close(self):
        del self.model


RUNNERS = {"artifact": ArtifactRunner, "tensorrt": TensorRtRunner, "torch": TorchRunner}  # + peers.PEER_RUNNERS


def make_runner(spec: TargetSpec) -> Runner:
    from runtimes.errors import ConfigError

    from .peers import PEER_RUNNERS

    kinds = {**RUNNERS, **PEER_RUNNERS}
    if spec.kind not in kinds:
        raise ConfigError(f"unknown target kind '{spec.kind}'. Expected one of: {', '.join(kinds)}")
    return kinds[spec.kind](spec)
