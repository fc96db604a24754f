"""feature-extraction, as transformers' FeatureExtractionPipeline: per input [1][tokens][hidden] floats."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .encoding import Job, as_batch, check_text, encode


def prepare(p, inputs) -> Job:
    texts, single = as_batch(inputs)
    texts = [check_text(t, f"input #{i}") for i, t in enumerate(texts)]
    cut: list[int] = []
    encs = encode(p, texts, cut=cut)

    def finish(outs):
        answers = [out["last_hidden_state"][None, :len(e.ids)].tolist() for e, out in zip(encs, outs)]
        return answers[0] if single else answers

    return Job([e.ids for e in encs], finish, truncated=tuple(cut))


DEFAULT_POOLING = {"mode": "mean", "normalize": True, "from": "the service's default (no pooling config recorded)"}


def pooling_config(manifest) -> dict:
    """The artifact's sentence-embedding pooling (manifest source.pooling, written at export), else mean + L2."""
    return manifest.source.get("pooling") or DEFAULT_POOLING


def pool(hidden: np.ndarray, pooling: dict, dimensions: int | None = None) -> np.ndarray:
    """One sequence's token vectors [tokens, hidden] (padding already cut off) -> its embedding, as
    sentence-transformers computes it; `dimensions` keeps the first N values (then normalizes, if the config does)."""
    mode = pooling["mode"]
    if mode == "mean":
        v = hidden.mean(axis=0, dtype=np.float64)
    elif mode == "cls":
        v = hidden[0].astype(np.float64)
    elif mode == "max":
        v = hidden.max(axis=0).astype(np.float64)
    else:
        raise ConfigError(f"pooling mode '{mode}' is not one of mean, cls, max")
    if dimensions is not None:
        v = v[:dimensions]
    if pooling.get("normalize"):
        v = v / max(np.linalg.norm(v), 1e-12)
    return v.astype(np.float32)
