"""OpenVINO backend (CPU). Dynamic batch and sequence. The inference precision is set from the manifest
and the one the compiled model reports is checked: OpenVINO would otherwise pick bf16 by itself on CPUs
with AVX512-BF16/AMX. Performance hint (RuntimeOptions.hint): "latency" (default) runs a batch as one
request; "throughput" compiles with several streams and runs row chunks of a batch in parallel, one
infer request per stream (start_async/wait), then stacks them (same answers, more cores busy). An
AsyncInferQueue with a Python callback was tried first and aborted the process once under load."""
from __future__ import annotations

import numpy as np

from .base import Runtime
from .errors import ArtifactMismatch, BackendUnavailable, ConfigError

# manifest precision -> INFERENCE_PRECISION_HINT. int8 IR: quantized ops run int8, the rest f32.
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def precision_hint(manifest) -> str:
    return manifest.recipe.get("inference_precision_hint") or HINTS[manifest.precision]


class OpenVinoRuntime(Runtime):
    backend = "openvino"

    def _load(self) -> None:
        import openvino as ov
        import openvino.properties.hint as hints

        m = self.manifest
        if self.options.precision is not None and self.options.precision != m.precision:
            raise ConfigError(f"this openvino artifact is {m.precision}; precision '{self.options.precision}' was "
                              f"asked for. Fix: omit the precision or build it: "
                              f"`distilbert-deploy export-openvino SRC --precision {self.options.precision}`")
        if self.options.device != "cpu":
            raise BackendUnavailable("openvino", detail=f"device '{self.options.device}' was asked for; this backend "
                                     f"runs on CPU only", hint="use --device cpu, or the onnxruntime/tensorrt backends")
        wanted = precision_hint(m)
        mode = hints.PerformanceMode.THROUGHPUT if self.options.hint == "throughput" else hints.PerformanceMode.LATENCY
        config = {hints.performance_mode: mode, hints.inference_precision: getattr(ov.Type, wanted)}
        if self.options.threads:
            config["INFERENCE_NUM_THREADS"] = self.options.threads
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(self.artifact.model_path)), "CPU", config)
        self.ran_precision = self.compiled.get_property(hints.inference_precision).get_type_name()
        if self.ran_precision != wanted:
            del self.compiled
            raise ArtifactMismatch(f"openvino artifact '{self.artifact.path}' is {m.precision} (inference precision "
                                   f"{wanted}) but this CPU runs it as {self.ran_precision}. Fix: build a precision "
                                   f"this CPU supports (`distilbert-deploy export-openvino SRC --precision fp32`)")
        self.outputs = [(o.get_any_name(), o) for o in self.compiled.outputs]
        n = self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") if self.options.hint == "throughput" else 1
        self.requests = [self.compiled.create_infer_request() for _ in range(max(1, n))]

    def _run(self, request) -> dict[str, np.ndarray]:
        return {name: np.asarray(request.get_tensor(port).data, dtype=np.float32).copy() for name, port in self.outputs}

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feed.values())))
        if len(self.requests) == 1 or n == 1:
            self.requests[0].infer(feed)
            return self._run(self.requests[0])
        # throughput: contiguous row chunks, one per request, all in flight at once (no Python callbacks)
        chunks = np.array_split(np.arange(n), min(n, len(self.requests)))
        for request, rows in zip(self.requests, chunks):
            request.start_async({k: v[rows[0]:rows[-1] + 1] for k, v in feed.items()})
        for request, _ in zip(self.requests, chunks):
            request.wait()
        parts = [self._run(request) for request, _ in zip(self.requests, chunks)]
        return {name: np.concatenate([p[name] for p in parts]) for name, _ in self.outputs}

    def _describe(self) -> dict:
        import openvino as ov

        out = {"openvino": ov.get_version(), "hint": self.options.hint or "latency", "threads": self.options.threads,
               "inference_precision": precision_hint(self.manifest)}
        if self.loaded:
            out["inference_precision"] = self.ran_precision
            out["optimal_requests"] = self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        return out

    def _close(self) -> None:
        self.requests = []
        del self.compiled
