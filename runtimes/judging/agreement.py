"""The agreement metrics an INT8 recipe's accuracy search controls (higher is better, in [0, 1]): "accuracy", argmax
against the gold labels (text-classification); the others, agreement with the fp32 parent's reference outputs.
numpy only, and no project import: quantization/inc_worker.py loads this file inside .venv-inc, and
quantization/agreement.py imports it in the main environment, so both recipes score alike."""
from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "token_label_agreement", "masked_token_agreement", "span_position_agreement", "token_cosine",
           "choice_agreement", "logit_cosine", "row_logit_cosine")
# one judged value (or pair, or vector) per row
PER_ROW = ("accuracy", "choice_agreement", "span_position_agreement", "row_logit_cosine")
COSINES = ("token_cosine", "logit_cosine", "row_logit_cosine")
UNDECIDED = -1  # a reference decision that is a near-tie: not counted
ROW_WIDTH = 512  # positions a question-answering row's logits are zero-padded to, so any batching compares alike


def judged(metric: str, outputs: list, where: np.ndarray) -> np.ndarray:
    """What `metric` compares, from one batch's head outputs (in the head's output order). where: boolean
    [batch, sequence] positions judged: real tokens (attention mask), for fill-mask the [MASK] positions.
    Token-level metrics return the judged positions flattened in row-major order, so concatenating batches gives
    the same sequence however the rows are batched."""
    x = np.asarray(outputs[0])
    if metric in ("accuracy", "choice_agreement"):  # [batch, labels or choices] -> [batch]
        return x.argmax(-1)
    if metric in ("token_label_agreement", "masked_token_agreement"):  # [batch, seq, labels/vocab] -> [n]
        return x[where.astype(bool)].argmax(-1)
    if metric == "span_position_agreement":  # start/end argmax over each row's real tokens -> [batch, 2]
        real = where.astype(bool)
        return np.stack([np.where(real, np.asarray(o), -np.inf).argmax(-1) for o in outputs[:2]], axis=-1)
    if metric in ("token_cosine", "logit_cosine"):  # [batch, seq, hidden/labels/vocab] -> [n, hidden/labels/vocab]
        return x[where.astype(bool)].astype(np.float32)
    if metric == "row_logit_cosine":  # choices [batch, choices], or start/end over real tokens, zero-padded
        if len(outputs) == 1:
            return x.astype(np.float32)
        real = where.astype(bool)
        out = np.zeros((len(x), 2, ROW_WIDTH), np.float32)
        for k, o in enumerate(outputs[:2]):
            out[:, k, :real.shape[1]] = np.where(real, np.asarray(o), 0.0)
        return out.reshape(len(x), -1)
    raise ValueError(f"unknown metric '{metric}' (known: {', '.join(METRICS)})")


def score(metric: str, got: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """(sum, count) of `metric` for judged values `got` against the reference `ref` (labels, or the fp32
    parent's judged values, UNDECIDED where its decision was a near-tie); the metric over any set of batches is
    sum(sums) / sum(counts)."""
    if got.shape != ref.shape:
        raise ValueError(f"{metric}: {got.shape} judged values against a reference of {ref.shape}")
    if metric in COSINES:
        g, r = got.astype(np.float64), ref.astype(np.float64)
        cos = (g * r).sum(-1) / np.maximum(np.linalg.norm(g, axis=-1) * np.linalg.norm(r, axis=-1), 1e-12)
        return float(cos.sum()), int(cos.size)
    counted = ref != UNDECIDED
    return float((got == ref)[counted].sum()), int(counted.sum())
