"""Shared by every task: the tokenizer, inputs -> encodings (with the over-long-input policy),
length-sorted batches padded to their longest row, and the score functions. numpy only."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import ArtifactError, ArtifactMismatch, InputError
from ..heads import get_head

if TYPE_CHECKING:
    from .core import TaskPipeline


class TruncationWarning(UserWarning):
    """An input was longer than max_length tokens and was cut. Escalate with
    warnings.simplefilter('error', TruncationWarning) or use on_overflow='error'."""


@dataclass(frozen=True)
class Job:
    """A prepared task call: the model rows to run, and how to turn their outputs into answers.
    TaskPipeline runs the rows itself; the service hands them to its batcher instead."""

    rows: list  # token ids per model row (multiple-choice: one list per choice)
    finish: Callable[[list], Any]  # per-row outputs (input order) -> the pipeline's answer
    groups: list | None = None  # rows of different groups never share a batch
    truncated: tuple[int, ...] = ()  # inputs that were cut to max_length tokens


def load_tokenizer(path: str | os.PathLike):
    """The fast tokenizer saved in an artifact (or tokenizer) directory. Never imports torch
    (AutoTokenizer would) and never calls the hub."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise ArtifactError(f"no tokenizer.json in {path}; the task layer needs the fast tokenizer saved next to "
                            f"the model. Fix: tokenizer.save_pretrained('{path}') or re-export the artifact")
    return PreTrainedTokenizerFast.from_pretrained(path)


def as_batch(inputs: Any) -> tuple[list, bool]:
    """(items, single): one input becomes a batch of one; an empty batch is an error."""
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    if not items:
        raise InputError("got an empty list of inputs; expected one input or a non-empty list of them. "
                         "Fix: pass at least one text")
    return items, single


def check_text(text: Any, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{what} must be a non-empty string; got {text!r}. Fix: drop it or fill it in")
    return text


def encode(p: "TaskPipeline", texts: Sequence[str], pairs: Sequence[str | None] | None = None,
           cut: list | None = None) -> list:
    """One tokenizers.Encoding per text (or text pair). Inputs longer than p.max_length tokens are cut
    to it with a TruncationWarning (their indices appended to `cut`), or rejected when p.on_overflow == 'error'."""
    encs = _tokenize(p.tokenizer, texts, pairs)
    long = [i for i, e in enumerate(encs) if len(e.ids) > p.max_length]
    if long:
        sizes = ", ".join(f"#{i}: {len(encs[i].ids)}" for i in long[:5]) + (", ..." if len(long) > 5 else "")
        what = f"{len(long)} input(s) longer than max_length={p.max_length} tokens ({sizes})"
        if p.on_overflow == "error":
            raise InputError(f"{what}. Fix: shorten them, or use on_overflow='truncate' to cut them to "
                             f"{p.max_length} tokens")
        warnings.warn(f"{what}: truncated to {p.max_length} tokens. Pass on_overflow='error' to reject "
                      f"over-long inputs instead", TruncationWarning, stacklevel=4)
        if cut is not None:
            cut.extend(long)
        cut = _tokenize(p.tokenizer, [texts[i] for i in long], pairs and [pairs[i] for i in long],
                        truncation=True, max_length=p.max_length)
        for i, e in zip(long, cut):
            encs[i] = e
    return encs


def _tokenize(tok, texts, pairs=None, **kw) -> list:
    if pairs is None or all(q is None for q in pairs):
        return list(tok(list(texts), verbose=False, **kw).encodings)
    if all(q is not None for q in pairs):
        return list(tok(list(texts), list(pairs), verbose=False, **kw).encodings)
    return [tok(t, q, verbose=False, **kw).encodings[0] for t, q in zip(texts, pairs)]  # mixed pairs/singles


def infer(p: "TaskPipeline", rows: Sequence[Sequence], groups: Sequence | None = None) -> list[dict[str, np.ndarray]]:
    """Run rows of token ids (for multiple-choice: a list of them per row) through p.runtime, one infer call per
    batch of up to p.batch_size rows, each batch right-padded to its longest row. Rows are sorted by length
    (within equal `groups`, which never share a batch) and returned in input order; padding positions are
    still in the outputs, so callers slice sequence outputs to their row's length."""
    need = get_head(p.task).outputs
    pad_id = p.tokenizer.pad_token_id or 0
    lengths = [max(map(len, r)) if r and not isinstance(r[0], int) else len(r) for r in rows]
    keys = [(groups[i] if groups is not None else 0, lengths[i]) for i in range(len(rows))]
    order = sorted(range(len(rows)), key=keys.__getitem__)
    out: list = [None] * len(rows)
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and stop - start < p.batch_size and keys[order[stop]][0] == keys[order[start]][0]:
            stop += 1
        batch = order[start:stop]
        res = p.runtime.infer(pad_rows([rows[i] for i in batch], pad_id))
        if missing := [n for n in need if n not in res]:
            raise ArtifactMismatch(f"the runtime returned outputs {sorted(res)}; task '{p.task}' needs {list(need)} "
                                   f"(missing {missing}). Fix: load an artifact exported for '{p.task}'")
        for j, i in enumerate(batch):
            out[i] = {n: np.asarray(res[n][j], dtype=np.float32) for n in need}
        start = stop
    return out


def pad_rows(rows: list, pad_id: int) -> dict[str, np.ndarray]:
    """Rows of token ids (multiple-choice: a list per choice) right-padded to the longest: the model feed."""
    nested = not isinstance(rows[0][0], int)
    flat = [r for row in rows for r in (row if nested else [row])]
    n = max(map(len, flat))
    ids = np.full((len(flat), n), pad_id, dtype=np.int64)
    mask = np.zeros((len(flat), n), dtype=np.int64)
    for k, r in enumerate(flat):
        ids[k, :len(r)] = r
        mask[k, :len(r)] = 1
    shape = (len(rows), -1, n) if nested else (len(rows), n)
    return {"input_ids": ids.reshape(shape), "attention_mask": mask.reshape(shape)}


def label_names(p: "TaskPipeline", n: int) -> tuple[str, ...]:
    """The artifact's labels, or transformers' default LABEL_i names when it has none."""
    if p.labels is None:
        return tuple(f"LABEL_{i}" for i in range(n))
    if len(p.labels) != n:
        raise ArtifactMismatch(f"the model gives {n} logits per prediction but {len(p.labels)} labels were given "
                               f"({', '.join(p.labels)}). Fix: pass the model's labels (config.id2label order)")
    return p.labels


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
