"""One call from an artifact directory to pipeline-style answers."""
from __future__ import annotations

import os

from .base import RuntimeOptions
from .registry import load_runtime


def load_pipeline(path: str | os.PathLike, options: RuntimeOptions = RuntimeOptions(), **kwargs):
    """Load the artifact's runtime and wrap it in the task layer. kwargs go to TaskPipeline."""
    from .tasks import TaskPipeline, load_tokenizer

    runtime = load_runtime(path, options)
    m = runtime.manifest
    kwargs.setdefault("max_length", m.shape_profile["max"]["sequence"])
    kwargs.setdefault("batch_size", min(8, m.shape_profile["max"]["batch"]))
    return TaskPipeline(runtime, load_tokenizer(runtime.artifact.path), m.task, m.labels, **kwargs)
