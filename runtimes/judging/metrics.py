"""Parity metrics: pure numpy functions of reference and candidate outputs, each with a known answer
in tests/test_parity_metrics.py. "ref" is always the PyTorch fp32 reference."""
from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Numeric:
    max_abs: float
    mean_abs: float
    rel_err: float  # ||got - ref|| / ||ref||
    cosine: float  # of the flattened outputs
    count: int  # values compared
    sums: tuple = (0.0, 0.0, 0.0, 0.0, 0.0)  # sum|d|, ||d||^2, ||ref||^2, ||got||^2, ref.got: to merge chunks


def numeric(ref: np.ndarray, got: np.ndarray, mask: np.ndarray | None = None) -> Numeric:
    """Raw-output errors over the positions where `mask` (broadcast over trailing axes) is true.
    float32 inputs stay float32 (the difference of two close floats is exact); sums are float64."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        raise ValueError(f"shape {got.shape} != reference {ref.shape}")
    if mask is not None:
        keep = np.asarray(mask, bool)
        ref, got = ref[keep], got[keep]
    ref, got = ref.ravel(), got.ravel()
    if not np.isfinite(got).all():
        return Numeric(float("inf"), float("inf"), float("inf"), float("nan"), int(ref.size))
    d = np.abs(got - ref)
    f64 = np.float64
    sums = (float(d.sum(dtype=f64)), float(np.dot(d.astype(f64), d)), float(np.dot(ref.astype(f64), ref)),
            float(np.dot(got.astype(f64), got)), float(np.dot(ref.astype(f64), got)))
    return _finish(float(d.max()) if d.size else 0.0, int(ref.size), sums)


def merge(parts: list[Numeric]) -> Numeric:
    """One Numeric over several compared chunks (as if concatenated)."""
    if any(not np.isfinite(p.max_abs) for p in parts):
        return Numeric(float("inf"), float("inf"), float("inf"), float("nan"), sum(p.count for p in parts))
    sums = tuple(map(sum, zip(*(p.sums for p in parts)))) if parts else (0.0,) * 5
    return _finish(max((p.max_abs for p in parts), default=0.0), sum(p.count for p in parts), sums)


def _finish(max_abs: float, count: int, sums: tuple) -> Numeric:
    if count == 0:
        return Numeric(0.0, 0.0, 0.0, 1.0, 0, sums)
    sum_abs, dd, rr, gg, rg = sums
    cos = 1.0 if rr == 0 and gg == 0 else rg / max(np.sqrt(rr * gg), 1e-300)
    return Numeric(max_abs, sum_abs / count, float(np.sqrt(dd) / max(np.sqrt(rr), 1e-12)), float(cos), count, sums)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity along the last axis (a float for 1-D input). Two zero vectors count as equal."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    dot = (a * b).sum(-1)
    both_zero = (na == 0) & (nb == 0)
    out = np.where(both_zero, 1.0, dot / np.maximum(na * nb, 1e-300))
    return float(out) if np.ndim(out) == 0 else out


def margins(probs: np.ndarray) -> np.ndarray:
    """Per row: the gap between the two largest values (how decisive the reference's answer is)."""
    p = np.sort(np.asarray(probs, np.float64), axis=-1)
    return p[..., -1] - p[..., -2] if p.shape[-1] > 1 else np.ones(p.shape[:-1])


@dataclass(frozen=True)
class Agreement:
    rate: float  # agreeing / counted (1.0 when nothing is counted)
    counted: int  # decisions judged: the reference's margin is at least tie_margin
    total: int
    disagree: tuple[int, ...]  # indices of counted decisions that differ


def agreement(ref: Sequence, got: Sequence, ref_margin: Sequence[float] | None = None,
              tie_margin: float = 0.0) -> Agreement:
    """Share of equal decisions (labels, choices, token ids, spans). With ref_margin, decisions where the
    reference itself is a near-tie (margin < tie_margin) are not counted."""
    if len(ref) != len(got):
        raise ValueError(f"{len(got)} decisions != reference {len(ref)}")
    counted = [i for i in range(len(ref)) if ref_margin is None or ref_margin[i] >= tie_margin]
    bad = tuple(i for i in counted if ref[i] != got[i])
    return Agreement(1.0 - len(bad) / len(counted) if counted else 1.0, len(counted), len(ref), bad)


def topk_overlap(ref_ids: Sequence[Sequence[int]], got_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Per row: |top-k(ref) ∩ top-k(got)| / k."""
    return np.array([len(set(r) & set(g)) / max(len(r), 1) for r, g in zip(ref_ids, got_ids, strict=True)])


def topk_ids(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values along the last axis, largest first."""
    logits = np.asarray(logits)
    idx = np.argpartition(-logits, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(logits, idx, -1), axis=-1, kind="stable")
    return np.take_along_axis(idx, order, -1)


def _words(text: str) -> list[str]:
    """SQuAD normalisation: lower case, no punctuation, no articles, split on whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def span_f1(ref: str, got: str) -> float:
    """SQuAD token F1 of an answer against the reference answer (1.0 when both are empty)."""
    r, g = _words(ref), _words(got)
    if not r or not g:
        return float(r == g)
    common = sum((Counter(r) & Counter(g)).values())
    if common == 0:
        return 0.0
    p, rc = common / len(g), common / len(r)
    return 2 * p * rc / (p + rc)


def accuracy(pred: Sequence, gold: Sequence) -> float:
    if len(pred) != len(gold) or not gold:
        raise ValueError(f"need equally many predictions ({len(pred)}) and gold labels ({len(gold)}), at least one")
    return float(np.mean([p == g for p, g in zip(pred, gold)]))


def accuracy_delta(ref_pred: Sequence, got_pred: Sequence, gold: Sequence) -> tuple[float, float, float]:
    """(reference accuracy, candidate accuracy, candidate - reference): the task-metric delta. The delta is taken
    from the hit counts, so a drop of exactly the limit (3 of 300 tweets: -0.01) is -0.01, not 0.6533 - 0.6633."""
    a, b = accuracy(ref_pred, gold), accuracy(got_pred, gold)
    hits = lambda pred: sum(p == g for p, g in zip(pred, gold))  # noqa: E731
    return a, b, (hits(got_pred) - hits(ref_pred)) / len(gold)
