"""The Runtime lifecycle (after Polygraphy's runners): cheap __init__, heavy load(),
checked infer(feed) -> outputs, describe(), close(); usable as a context manager."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np

from .artifact import Artifact
from .errors import ConfigError, InputError

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
HINTS = ("latency", "throughput")  # performance hints (OpenVINO); None = the backend's default


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "cpu"
    precision: str | None = None  # None = what the artifact was built for
    providers: tuple[str, ...] = ()  # onnxruntime execution providers; () = derived from device
    threads: int | None = None  # intra-op threads; None = backend default
    hint: str | None = None  # openvino: "latency" (one request) or "throughput" (rows in parallel); None = latency
    # openvino: compile one shape-specialized model per input shape seen (LRU); None: what the artifact's
    # recipe.runtime_defaults says (an optimize winner may pad to sequence buckets and compile one model each)
    static_shapes: bool | None = None
    spin: bool | None = None  # onnxruntime: intra-op threads spin-wait between operators; None = ORT's default (on)
    cuda_graphs: bool = False  # tensorrt: capture one CUDA graph per (profile, shape) and replay it

    def __post_init__(self):
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device '{self.device}'. Expected one of: {', '.join(DEVICES)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{self.precision}'. Expected one of: {', '.join(PRECISIONS)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.hint is not None and self.hint not in HINTS:
            raise ConfigError(f"unknown performance hint '{self.hint}'. Expected one of: {', '.join(HINTS)}")


class Runtime(ABC):
    backend: ClassVar[str]

    def __init__(self, artifact: Artifact, options: RuntimeOptions = RuntimeOptions()):
        self.artifact = artifact
        self.options = options
        self.loaded = False

    @property
    def manifest(self):
        return self.artifact.manifest

    def load(self) -> "Runtime":
        if not self.loaded:
            self._load()
            self.loaded = True
        return self

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.loaded:
            raise InputError(f"{self.backend} runtime is not loaded. Fix: call .load() or use it in a `with` block")
        check_feed(self.artifact, feed)
        return self._infer(dict(feed))

    def describe(self) -> dict:
        m = self.manifest
        return {"backend": self.backend, "artifact": str(self.artifact.path), "task": m.task,
                "precision": m.precision, "device": self.options.device, **self._describe()}

    def close(self) -> None:
        if self.loaded:
            self._close()
            self.loaded = False

    def __enter__(self) -> "Runtime":
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _describe(self) -> dict:
        return {}

    def _close(self) -> None:
        pass


def check_feed(artifact: Artifact, feed: Mapping[str, np.ndarray]) -> None:
    """Names, dtypes, ranks and sizes against the manifest, before any backend sees the feed."""
    m = artifact.manifest
    expected = {t.name: t for t in m.inputs}
    if not isinstance(feed, Mapping):
        raise InputError(f"feed must be a mapping of input name -> numpy array; got {type(feed).__name__}")
    missing, extra = set(expected) - set(feed), set(feed) - set(expected)
    if missing or extra:
        raise InputError(f"feed names {sorted(feed)} do not match the artifact's inputs {sorted(expected)}"
                         + (f"; missing {sorted(missing)}" if missing else "")
                         + (f"; unexpected {sorted(extra)}" if extra else ""))
    shapes = set()
    for name, spec in expected.items():
        arr = feed[name]
        if not isinstance(arr, np.ndarray):
            raise InputError(f"input '{name}' must be a numpy array; got {type(arr).__name__}")
        if arr.dtype != np.dtype(spec.dtype):
            raise InputError(f"input '{name}' has dtype {arr.dtype}; expected {spec.dtype}. "
                             f"Fix: np.asarray(x, dtype=np.{spec.dtype})")
        if arr.ndim != len(spec.dims):
            raise InputError(f"input '{name}' has shape {arr.shape} (rank {arr.ndim}); expected rank "
                             f"{len(spec.dims)} with axes ({', '.join(map(str, spec.dims))})")
        shapes.add(arr.shape)
        for axis, size in zip(spec.dims, arr.shape):
            lo = m.shape_profile.get("min", {}).get(axis, 1)
            hi = m.shape_profile.get("max", {}).get(axis)
            if size < lo or (hi is not None and size > hi):
                raise InputError(f"input '{name}' axis '{axis}' is {size}; this artifact accepts {lo}..{hi} "
                                 f"(its shape profile). Fix: split the batch, truncate, or re-export with a "
                                 f"larger profile")
    if len(shapes) > 1:
        raise InputError(f"inputs must share one shape; got {', '.join(f'{n}{feed[n].shape}' for n in expected)}")
