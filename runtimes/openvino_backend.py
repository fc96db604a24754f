"""OpenVINO backend (CPU). Dynamic batch and sequence. The inference precision is set from the manifest
and the one the compiled model reports is checked: OpenVINO would otherwise pick bf16 by itself on CPUs
with AVX512-BF16/AMX. Performance hint (RuntimeOptions.hint): "latency" (default) runs a batch as one
request; "throughput" compiles with several streams and runs row chunks of a batch in parallel, one
infer request per stream (start_async/wait), then stacks them (same answers, more cores busy). An
AsyncInferQueue with a Python callback was tried first and aborted the process once under load.
RuntimeOptions.static_shapes compiles one shape-specialized model per input shape (e.g. a service's length
buckets): ~15-20% faster at bs1x128 than the dynamic-shape model, one compile per new shape. An artifact whose
recipe.runtime_defaults names sequence_buckets (what `optimize` writes when that wins) has every feed padded up to
the next bucket (pad id 0, attention mask 0) and its sequence-axis outputs cut back: a few static models instead
of a new shape per text length, which costs the dynamic model several times a call's time on a 2-core AMX Xeon
(docs/optimize/README.md)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .base import Runtime
from .errors import ArtifactMismatch, BackendUnavailable, ConfigError

# manifest precision -> INFERENCE_PRECISION_HINT. int8 IR: quantized ops run int8, the rest f32.
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def precision_hint(manifest) -> str:
    return manifest.recipe.get("inference_precision_hint") or HINTS[manifest.precision]


MAX_STATIC_SHAPES = 24  # static_shapes: compiled models kept (least recently used dropped first): a batch-1 and a
# batch model per bucket of `optimize`'s 11


def bucket_for(length: int, buckets) -> int:
    """The next bucket that holds `length` (the length itself when it is over every bucket)."""
    return next((b for b in buckets if b >= length), length)


def pad_to_bucket(feed: dict[str, np.ndarray], seq_axis: dict[str, int], buckets) -> tuple[dict, int]:
    """(feed padded with zeros on each input's sequence axis up to the next bucket, the original length)."""
    name = next(iter(seq_axis))
    length = feed[name].shape[seq_axis[name]]
    target = bucket_for(length, buckets)
    if target == length:
        return feed, length
    out = {}
    for k, v in feed.items():
        widths = [(0, 0)] * v.ndim
        widths[seq_axis[k]] = (0, target - length)
        out[k] = np.pad(v, widths)
    return out, length


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
        self.wanted = precision_hint(m)
        mode = hints.PerformanceMode.THROUGHPUT if self.options.hint == "throughput" else hints.PerformanceMode.LATENCY
        self.config = {hints.performance_mode: mode, hints.inference_precision: getattr(ov.Type, self.wanted)}
        if self.options.threads:
            self.config["INFERENCE_NUM_THREADS"] = self.options.threads
        defaults = m.recipe.get("runtime_defaults", {})
        self.static = defaults.get("static_shapes", False) if self.options.static_shapes is None else self.options.static_shapes
        self.buckets = tuple(defaults.get("sequence_buckets") or ()) if self.static else ()
        self.seq_axis = {t.name: list(t.dims).index("sequence") for t in m.inputs}
        self.out_seq_axis = {t.name: list(t.dims).index("sequence") for t in m.outputs if "sequence" in t.dims}
        self.seq_last = all(self.seq_axis[t.name] == len(t.dims) - 1 for t in m.inputs)
        self.core = ov.Core()
        self.model = self.core.read_model(str(self.artifact.model_path))
        self.compiled_by_shape: OrderedDict[tuple, tuple] = OrderedDict()
        # static_shapes: the first compile (and its precision check) happens here, at a small shape; with buckets,
        # one model per bucket at batch 1 (a service's first requests do not pay the compiles)
        probe = tuple((1, 2, 8) if len(t.dims) == 3 else (1, 8) for t in m.inputs) if self.static else None
        max_seq = m.shape_profile.get("max", {}).get("sequence", 512)
        for b in [b for b in self.buckets if b <= max_seq][:MAX_STATIC_SHAPES // 2]:
            probe = tuple((1, 2, b) if len(t.dims) == 3 else (1, b) for t in m.inputs)
            self._compiled_for(probe)
        self.compiled, self.requests = self._compiled_for(probe)
        self.outputs = [(o.get_any_name(), o) for o in self.compiled.outputs]

    def _compiled_for(self, shapes: tuple | None):
        """(compiled model, infer requests) for these input shapes (None: the dynamic model)."""
        if shapes in self.compiled_by_shape:
            self.compiled_by_shape.move_to_end(shapes)
            return self.compiled_by_shape[shapes]
        import openvino.properties.hint as hints

        model = self.model
        if shapes is not None:
            model = self.model.clone()
            model.reshape({t.name: list(shape) for t, shape in zip(self.manifest.inputs, shapes)})
        compiled = self.core.compile_model(model, "CPU", self.config)
        ran = compiled.get_property(hints.inference_precision).get_type_name()
        if ran != self.wanted:
            raise ArtifactMismatch(f"openvino artifact '{self.artifact.path}' is {self.manifest.precision} (inference "
                                   f"precision {self.wanted}) but this CPU runs it as {ran}. Fix: build a precision "
                                   f"this CPU supports (`distilbert-deploy export-openvino SRC --precision fp32`)")
        self.ran_precision = ran
        n = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") if self.options.hint == "throughput" else 1
        entry = (compiled, [compiled.create_infer_request() for _ in range(max(1, n))])
        self.compiled_by_shape[shapes] = entry
        while len(self.compiled_by_shape) > MAX_STATIC_SHAPES:
            self.compiled_by_shape.popitem(last=False)
        return entry

    def _requests(self, feed: dict[str, np.ndarray]) -> list:
        if not self.static:
            return self.requests
        return self._requests_for(tuple(feed[t.name].shape for t in self.manifest.inputs))

    def _requests_for(self, shapes: tuple) -> list:
        if self.buckets and shapes[0][0] > 1:
            # batches: one model per bucket with the batch (and choices) axes dynamic, not one per (batch, bucket):
            # a service's batches come in every size (measured: docs/optimize/README.md)
            shapes = tuple((-1,) * (len(s) - 1) + s[-1:] for s in shapes)
        return self._compiled_for(shapes)[1]

    def _run(self, request) -> dict[str, np.ndarray]:
        return {name: np.asarray(request.get_tensor(name).data, dtype=np.float32).copy() for name, _ in self.outputs}

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.buckets:
            return self._infer_shape(feed)
        if self.seq_last and self.options.hint != "throughput":
            length = next(iter(feed.values())).shape[-1]
            out = self._infer_in_place(feed, length)
        else:
            padded, length = pad_to_bucket(feed, self.seq_axis, self.buckets)
            out = self._infer_shape(padded)
        for name, axis in self.out_seq_axis.items():  # sequence-axis outputs cut back to the feed's length
            out[name] = np.ascontiguousarray(out[name][(slice(None),) * axis + (slice(0, length),)])
        return out

    def _infer_in_place(self, feed: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
        """The feed written, zero-padded to its bucket, straight into the bucket model's own input tensors (no padded
        copy for infer() to copy again): 8% a call less than pad_to_bucket + infer(feed) on tweets one at a time
        (AVX-512; `python -m benchmarks.ov_shapes ARTIFACT --feeding`). The sequence axis is the last of every input."""
        target = bucket_for(length, self.buckets)
        request = self._requests_for(tuple(feed[t.name].shape[:-1] + (target,) for t in self.manifest.inputs))[0]
        for name, value in feed.items():
            tensor = request.get_tensor(name)
            if tuple(tensor.shape) != value.shape[:-1] + (target,):
                tensor.shape = [*value.shape[:-1], target]  # a batch model: its batch axis is dynamic
            data = tensor.data
            data[..., :length] = value
            data[..., length:] = 0
        request.infer()
        return self._run(request)

    def _infer_shape(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feed.values())))
        if self.options.hint != "throughput" or n == 1:
            request = self._requests(feed)[0]
            request.infer(feed)
            return self._run(request)
        # throughput: contiguous row chunks, one per request, all in flight at once (no Python callbacks)
        chunks = np.array_split(np.arange(n), min(n, len(self.requests)))
        parts = [{k: v[rows[0]:rows[-1] + 1] for k, v in feed.items()} for rows in chunks]
        busy = []
        for i, part in enumerate(parts):
            request = self._requests(part)[i % len(self.requests)]
            request.start_async(part)
            busy.append(request)
        for request in busy:
            request.wait()
        outs = [self._run(request) for request in busy]
        return {name: np.concatenate([o[name] for o in outs]) for name, _ in self.outputs}

    def _describe(self) -> dict:
        import openvino as ov

        out = {"openvino": ov.get_version(), "hint": self.options.hint or "latency", "threads": self.options.threads,
               "inference_precision": precision_hint(self.manifest),
               "static_shapes": self.static if self.loaded else self.options.static_shapes}
        if self.loaded and self.buckets:
            out["sequence_buckets"] = list(self.buckets)
        if self.loaded:
            out["inference_precision"] = self.ran_precision
            out["optimal_requests"] = self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            out["compiled_shapes"] = len(self.compiled_by_shape)
        return out

    def _close(self) -> None:
        self.requests = []
        self.compiled_by_shape.clear()
        del self.compiled, self.model
