"""PyTorch reference backend: fp32; bf16 on CPU; fp16 on CUDA. Imports torch only in load()."""
from __future__ import annotations

import numpy as np

from .base import Runtime
from .errors import BackendUnavailable, ConfigError
from .heads import get_head

ALLOWED = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")}


def checked_dtype(torch, device: str, precision: str):
    """The torch dtype that runs `precision` on `device`; ConfigError for a pair torch does not run here,
    BackendUnavailable for CUDA without a GPU. The runtime and the bench's PyTorch baselines share it."""
    if precision not in ALLOWED.get(device, ()):
        raise ConfigError(f"torch on {device} runs {', '.join(ALLOWED.get(device, ()))}; '{precision}' was asked "
                          f"for. Fix: use --precision {ALLOWED['cpu'][-1]} or --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("torch", missing=["cuda"], detail="torch.cuda.is_available() is False",
                                 hint="run on a machine with an NVIDIA GPU and a CUDA build of torch "
                                      "(make venv TORCH_CONSTRAINTS=constraints/gpu.txt)")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class TorchRuntime(Runtime):
    backend = "torch"

    def _load(self) -> None:
        import torch
        import transformers

        device, precision = self.options.device, self.options.precision or "fp32"
        self.dtype = checked_dtype(torch, device, precision)
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self.torch = torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-weight loading bars: noise in a service's log
        cls = getattr(transformers, get_head(self.manifest.task).model_class)
        model = cls.from_pretrained(self.artifact.path, attn_implementation="eager")
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.precision = precision

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        device = self.options.device
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v).to(device) for k, v in feed.items()})
        return {spec.name: out[spec.name].float().cpu().numpy() for spec in self.manifest.outputs}

    def _describe(self) -> dict:
        torch = self.torch if self.loaded else None
        d = {"precision": self.options.precision or "fp32"}
        if torch is not None:
            d.update(torch=torch.__version__, threads=torch.get_num_threads())
            if self.options.device == "cuda":
                d["gpu"] = torch.cuda.get_device_name()
        return d

    def _close(self) -> None:
        del self.model
        if self.options.device == "cuda":
            self.torch.cuda.empty_cache()
