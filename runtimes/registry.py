"""Backend registry: name -> where the Runtime lives, what it needs, how to install it.
load_runtime(path) reads the manifest, checks the modules exist, and only then imports."""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass

from .artifact import load_artifact
from .base import Runtime, RuntimeOptions
from .errors import BackendUnavailable, ConfigError


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "module:Class"
    modules: tuple[str, ...]  # import names (not distribution names)
    extra: str  # pip extra that installs it

    @property
    def hint(self) -> str:
        return f"pip install 'distilbert-deploy[{self.extra}]' (in this repo: make venv EXTRAS=...,{self.extra})"

    def missing(self) -> list[str]:
        return [m for m in self.modules if importlib.util.find_spec(m) is None]


BACKENDS: dict[str, BackendEntry] = {
    e.name: e
    for e in (
        BackendEntry("torch", "runtimes.torch_backend:TorchRuntime", ("torch", "transformers"), "export"),
        BackendEntry("onnxruntime", "runtimes.ort_backend:OrtRuntime", ("onnxruntime",), "ort"),
        BackendEntry("openvino", "runtimes.openvino_backend:OpenVinoRuntime", ("openvino",), "openvino"),
        # the flavor's module (tensorrt or tensorrt_rtx) is the manifest's to name: the runtime checks it first
        BackendEntry("tensorrt", "runtimes.tensorrt_backend:TensorRtRuntime", ("torch",), "export"),
    )
}


def get_backend(name: str) -> BackendEntry:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown backend '{name}'. Expected one of: {', '.join(BACKENDS)}") from None


def runtime_class(name: str) -> type[Runtime]:
    entry = get_backend(name)
    if missing := entry.missing():
        raise BackendUnavailable(name, missing=missing, hint=entry.hint)
    module, cls = entry.target.split(":")
    return getattr(importlib.import_module(module), cls)


def open_runtime(path: str | os.PathLike, options: RuntimeOptions = RuntimeOptions(), *, verify: bool = True) -> Runtime:
    """Construct (not load) the runtime for the artifact at `path`."""
    artifact = load_artifact(path, verify=verify)
    return runtime_class(artifact.manifest.backend)(artifact, options)


def load_runtime(path: str | os.PathLike, options: RuntimeOptions = RuntimeOptions(), *, verify: bool = True) -> Runtime:
    return open_runtime(path, options, verify=verify).load()
