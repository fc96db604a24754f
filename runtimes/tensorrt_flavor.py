"""Full TensorRT (10.x, 11.x; module `tensorrt`) and TensorRT-RTX (module `tensorrt_rtx`) behind one small
adapter: every API difference between them lives here, so the builder and the runtime have one code path.
Neither module is imported until a Flavor is constructed."""
from __future__ import annotations

import collections
import importlib
import importlib.util
import re
from dataclasses import dataclass

from .errors import BackendUnavailable, ConfigError

FLAVORS = ("tensorrt", "tensorrt-rtx")
MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
DEFAULT_FLAVOR = "tensorrt"
# RTX: CPU-only builds for these by default (TensorRT-RTX's own portable set: Ampere, Ada, Blackwell)
RTX_DEFAULT_TARGETS = ("sm80", "sm86", "sm89", "sm120")
TWO_FIXES = ("(1) full TensorRT, built on the NVIDIA GPU it will run on: install it from NVIDIA's package index "
             "(pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12, or tensorrt-cu13); "
             "(2) for RTX GPUs (sm75..sm121): TRT_FLAVOR=tensorrt-rtx (`--flavor tensorrt-rtx`, "
             "pip install tensorrt-rtx-cu13), which builds without a GPU")


def check_flavor(flavor: str) -> None:
    if flavor not in FLAVORS:
        raise ConfigError(f"unknown TensorRT flavor '{flavor}'. Expected one of: {', '.join(FLAVORS)}")


def available(flavor: str) -> bool:
    check_flavor(flavor)
    return importlib.util.find_spec(MODULES[flavor]) is not None


def sm(major: int, minor: int) -> str:
    return f"sm{major}{minor}"


def sm_number(target: str) -> int:
    """'sm89' -> 89, 'sm120' -> 120."""
    if not re.fullmatch(r"sm\d{2,3}", target):
        raise ConfigError(f"'{target}' is not a compute capability. Expected the form sm89 (8.9) or sm120 (12.0)")
    return int(target[2:])


@dataclass(frozen=True)
class Validity:
    checked: bool  # False: the flavor has no get_engine_validity
    valid: bool | None
    diagnostics: tuple[str, ...]  # EngineInvalidityDiagnostics names (MALFORMED_ENGINE, UNSUPPORTED_CC, ...)


class Flavor:
    """One TensorRT module, its one process-wide logger, and the calls that differ between flavors."""

    def __init__(self, name: str):
        check_flavor(name)
        self.name = name
        module = MODULES[name]
        if importlib.util.find_spec(module) is None:
            raise BackendUnavailable("tensorrt", missing=[module], hint=TWO_FIXES,
                                     detail=f"TensorRT flavor '{name}' was asked for")
        self.trt = importlib.import_module(module)
        self.rtx = name == "tensorrt-rtx"
        self.logger = _logger(self.trt)
        self._runtime = None

    @property
    def version(self) -> str:
        return self.trt.__version__

    @property
    def cuda_version(self) -> str | None:
        """The CUDA major the wheel was built for (tensorrt-rtx-cu13 -> '13'), from its distribution name."""
        from importlib import metadata

        for dist in metadata.packages_distributions().get(MODULES[self.name], []):
            if m := re.search(r"cu(\d+)", dist):
                return m.group(1)
        return None

    def targets(self) -> tuple[str, ...]:
        """Compute capabilities this flavor can build for ahead of time (RTX); () = the build GPU only (full)."""
        if not self.rtx:
            return ()
        return tuple(n.lower() for n in self.trt.ComputeCapability.__members__ if re.fullmatch(r"SM\d+", n))

    def check_targets(self, targets: tuple[str, ...]) -> None:
        for t in targets:
            sm_number(t)
        if self.rtx and (bad := [t for t in targets if t not in self.targets()]):
            raise ConfigError(f"TensorRT-RTX {self.version} cannot build for {', '.join(bad)}; it has targets "
                              f"{', '.join(self.targets())} (there is no sm90: use full TensorRT for H100/H200). "
                              f"Fix: TRT_TARGETS= a subset of those")

    def network(self, builder):
        return builder.create_network(1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))

    def set_targets(self, config, targets: tuple[str, ...]) -> None:
        if self.rtx:
            config.num_compute_capabilities = len(targets)
            for i, t in enumerate(targets):
                config.set_compute_capability(getattr(self.trt.ComputeCapability, t.upper()), i)

    def set_timing_cache(self, config, data: bytes) -> bool:
        """Full TensorRT: load a timing cache (b'' = a new one). RTX does no autotuning: its timing cache is a
        no-op that forces a GPU query, so it is never touched (the RTX runtime cache is filled at run time)."""
        if self.rtx:
            return False
        cache = config.create_timing_cache(data)
        return bool(config.set_timing_cache(cache, ignore_mismatch=False))

    def timing_cache(self, config) -> bytes | None:
        return None if self.rtx else bytes(config.get_timing_cache().serialize())

    def set_progress(self, config, monitor) -> bool:
        if not hasattr(self.trt, "IProgressMonitor"):
            return False
        config.progress_monitor = monitor
        return True

    def engine_validity(self, data: bytes) -> Validity:
        """Header check before deserializing, where the flavor has it. Without a GPU a good engine reads as
        (INVALID, no diagnostics): it cannot be checked against a device, which is not a defect."""
        runtime = self.runtime()
        if not hasattr(runtime, "get_engine_validity"):
            return Validity(False, None, ())
        validity, bits = runtime.get_engine_validity(data)
        names = tuple(n for n, v in self.trt.EngineInvalidityDiagnostics.__members__.items() if int(bits) & int(v))
        return Validity(True, validity == self.trt.EngineValidity.VALID, names)

    def runtime(self):
        if self._runtime is None:
            self._runtime = self.trt.Runtime(self.logger)
        return self._runtime

    def release(self) -> None:
        """Drop the TensorRT Runtime (before CUDA teardown, with the engines it made)."""
        self._runtime = None

    def execution_context(self, engine, runtime_cache: bytes):
        """(context, RTX runtime cache or None). RTX: the context gets a runtime config that holds the JIT
        kernel cache, seeded from the artifact's runtime.cache."""
        if not self.rtx:
            return engine.create_execution_context(), None
        config = engine.create_runtime_config()
        cache = config.create_runtime_cache()
        if runtime_cache and not cache.deserialize(runtime_cache):
            raise BackendUnavailable("tensorrt", detail="the artifact's runtime.cache does not deserialize",
                                     hint="rebuild the artifact with `make export-trt TRT_FLAVOR=tensorrt-rtx`")
        config.set_runtime_cache(cache)
        return engine.create_execution_context(config), cache


def _logger(trt):
    """One logger per TensorRT module per process (TensorRT ignores a second one): it keeps recent messages so
    errors can quote TensorRT's own reason; VERBOSE only while `verbose` is on (builds)."""
    if (existing := _LOGGERS.get(trt.__name__)) is not None:
        return existing

    class CaptureLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.records: collections.deque = collections.deque(maxlen=200_000)
            self.count = 0
            self.verbose = False

        def log(self, severity, msg):
            if severity == trt.ILogger.Severity.VERBOSE and not self.verbose:
                return
            self.records.append((severity.name, msg))
            self.count += 1

        def mark(self) -> int:
            return self.count

        def since(self, mark: int, *severities: str) -> list[tuple[str, str]]:
            new = list(self.records)[-(self.count - mark):] if self.count > mark else []
            return [r for r in new if not severities or r[0] in severities]

    _LOGGERS[trt.__name__] = CaptureLogger()
    return _LOGGERS[trt.__name__]


_LOGGERS: dict = {}
