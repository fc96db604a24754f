"""OIP text tensors <-> the task layer's inputs: which BYTES inputs each task takes, decoding them (UTF-8 checked) into
one task input per batch row, and TextTask, an artifact's task layer without a runtime. Shared by the service
(runtimes/serving) and Triton's python-backend text models (exporters/triton_models)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

# text inputs per task: (name, required)
TEXT_INPUTS = {
    "text-classification": (("text", True), ("text_pair", False)),
    "question-answering": (("question", True), ("context", True)),
    "multiple-choice": (("prompt", True), ("choices", True)),
}


def text_inputs(task: str) -> tuple[tuple[str, bool], ...]:
    return TEXT_INPUTS.get(task, (("text", True),))


def texts_of(name: str, manifest, tensors: dict[str, np.ndarray]) -> list:
    """OIP BYTES inputs -> the task layer's inputs, one per batch row (the service and Triton's text models)."""
    spec = text_inputs(manifest.task)
    names = {n for n, _ in spec}
    if unknown := sorted(set(tensors) - names):
        raise InputError(f"model '{name}' ({manifest.task}) has no input {unknown}. Expected raw tensors "
                         f"{[t.name for t in manifest.inputs]} or text inputs {sorted(names)}")
    if missing := [n for n, req in spec if req and n not in tensors]:
        raise InputError(f"model '{name}' ({manifest.task}) text request lacks {missing}; it takes "
                         f"{[n for n, _ in spec]} as BYTES")
    cols = {}
    for key, arr in tensors.items():
        if arr.dtype != np.object_:
            raise InputError(f"input '{key}' must be BYTES (UTF-8 text)")
        want = 2 if key == "choices" else 1
        if key != "choices" and arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != want or arr.shape[0] == 0:
            raise InputError(f"input '{key}' has shape {list(arr.shape)}; expected "
                             + ("[N, C] (N prompts, C choices each)" if want == 2 else "[N] or [N, 1]")
                             + " with N >= 1")
        cols[key] = [_utf8(x, key, i) for i, x in enumerate(arr.reshape(arr.shape[0], -1).tolist())]
    sizes = {n: len(c) for n, c in cols.items()}
    if len(set(sizes.values())) != 1:
        raise InputError(f"text inputs must have the same batch size; got {sizes}")
    n = next(iter(sizes.values()))
    task = manifest.task
    if task == "question-answering":
        return [{"question": q[0], "context": c[0]} for q, c in zip(cols["question"], cols["context"])]
    if task == "multiple-choice":
        return [{"prompt": p[0], "choices": cs} for p, cs in zip(cols["prompt"], cols["choices"])]
    if "text_pair" in cols:
        return [{"text": t[0], "text_pair": p[0]} for t, p in zip(cols["text"], cols["text_pair"])]
    return [cols["text"][i][0] for i in range(n)]


class TextTask:
    """An artifact's task layer without a runtime: text tensors -> (task inputs, Job). Triton's tokenizer and
    postprocess models each hold one and prepare the same request the same way."""

    def __init__(self, path: Path, name: str):
        from ..artifact import read_manifest
        from . import TaskPipeline, load_tokenizer

        self.name, self.manifest = name, read_manifest(path)
        m = self.manifest
        self.pipe = TaskPipeline(None, load_tokenizer(path), m.task, m.labels,
                                 max_length=m.shape_profile["max"]["sequence"])
        self.fields = [n for n, _ in text_inputs(m.task)]

    def prepare(self, tensors: dict[str, np.ndarray]):
        inputs = texts_of(self.name, self.manifest, tensors)
        return inputs, self.pipe.prepare(inputs)


def per_input(task: str, answers, n: int) -> list:
    """The pipeline unwraps a batch of one for fill-mask and question-answering; undo that."""
    if n == 1 and task in ("fill-mask", "question-answering"):
        return [answers]
    return answers


def _utf8(row: list, name: str, i: int) -> list[str]:
    out = []
    for x in row:
        try:
            out.append(x.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(f"input '{name}' element #{i} is not valid UTF-8 ({e.reason} at byte {e.start}). "
                             f"Expected UTF-8 text") from None
    return out
