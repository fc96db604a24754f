"""ONNX Runtime backend. A provider that was asked for and not obtained is an error:
ORT itself silently falls back to CPU when CUDA/TensorRT provider libraries are missing."""
from __future__ import annotations

import numpy as np

from .base import Runtime
from .errors import BackendUnavailable, ConfigError

CPU = "CPUExecutionProvider"
DEVICE_PROVIDERS = {"cpu": (CPU,), "cuda": ("CUDAExecutionProvider", CPU)}
GPU_HINT = ("install onnxruntime-gpu (not onnxruntime) with CUDA/cuDNN libraries that match it: "
            "make venv TORCH_CONSTRAINTS=constraints/gpu.txt EXTRAS=export,ort-gpu,dev")


class OrtRuntime(Runtime):
    backend = "onnxruntime"

    def requested_providers(self) -> tuple[str, ...]:
        return self.options.providers or DEVICE_PROVIDERS[self.options.device]

    def _load(self) -> None:
        import onnxruntime as ort

        precision = self.options.precision
        if precision is not None and precision != self.manifest.precision:
            raise ConfigError(f"this onnxruntime artifact is {self.manifest.precision}; precision '{precision}' "
                              f"was asked for. Fix: omit the precision or build a {precision} artifact")
        wanted = self.requested_providers()
        if absent := [p for p in wanted if p not in ort.get_available_providers()]:
            raise BackendUnavailable("onnxruntime", missing=absent, hint=GPU_HINT,
                                     detail=f"this onnxruntime build offers {ort.get_available_providers()}")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.options.threads:
            so.intra_op_num_threads = self.options.threads
        if self.options.spin is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.options.spin else "0")
        self.session = ort.InferenceSession(str(self.artifact.model_path), so, providers=list(wanted))
        got = self.session.get_providers()
        if dropped := [p for p in wanted if p not in got]:
            del self.session
            raise BackendUnavailable("onnxruntime", missing=dropped, hint=GPU_HINT,
                                     detail=f"the session fell back to {got} (provider libraries failed to load)")
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def _describe(self) -> dict:
        import onnxruntime as ort

        return {"providers": self.session.get_providers() if self.loaded else list(self.requested_providers()),
                "onnxruntime": ort.__version__, "threads": self.options.threads, "spin": self.options.spin}

    def _close(self) -> None:
        del self.session
