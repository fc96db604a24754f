"""fill-mask, as transformers' FillMaskPipeline: top_k candidates per mask token, optional targets."""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError, InputError
from .encoding import Job, as_batch, check_text, encode, softmax


def prepare(p, inputs, *, top_k: int = 5, targets: str | list[str] | None = None) -> Job:
    tok = p.tokenizer
    if tok.mask_token_id is None:
        raise ConfigError("the tokenizer defines no mask token, so fill-mask cannot run. Fix: use the tokenizer "
                          "the model was trained with")
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be an integer >= 1; got {top_k!r}")
    texts, single = as_batch(inputs)
    texts = [check_text(t, f"input #{i}") for i, t in enumerate(texts)]
    target_ids = None if targets is None else _target_ids(tok, targets)
    k = top_k if target_ids is None else min(top_k, len(target_ids))
    cut: list[int] = []
    encs = encode(p, texts, cut=cut)
    for i, e in enumerate(encs):
        if tok.mask_token_id not in e.ids:
            raise InputError(f"input #{i} has no {tok.mask_token} token (after truncation to {p.max_length} tokens); "
                             f"fill-mask predicts the masked token(s). Fix: put {tok.mask_token} where a word "
                             f"should be predicted")

    def finish(outs):
        answers = [_answer(tok, e, out["logits"], target_ids, k) for e, out in zip(encs, outs)]
        # the pipeline unwraps a list of one input
        return answers[0] if single or len(answers) == 1 else answers

    return Job([e.ids for e in encs], finish, truncated=tuple(cut))


def _answer(tok, e, logits: np.ndarray, target_ids: list[int] | None, k: int):
    ids = np.asarray(e.ids)
    where = np.flatnonzero(ids == tok.mask_token_id)
    probs = softmax(logits[where])
    if target_ids is not None:
        probs = probs[:, target_ids]
    one = len(where) == 1
    rows = [[_candidate(tok, ids, pos, int(c if target_ids is None else target_ids[c]), row[c], one)
             for c in _top(row, k)] for pos, row in zip(where, probs)]
    return rows[0] if one else rows


def _top(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first."""
    best = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
    return best[np.argsort(-row[best], kind="stable")]


def _candidate(tok, ids: np.ndarray, pos: int, token: int, score, one_mask: bool) -> dict:
    filled = ids.copy()
    filled[pos] = token
    filled = filled[filled != tok.pad_token_id]
    # like the pipeline: with several masks the sequence keeps its special tokens
    return {"score": float(score), "token": token, "token_str": tok.decode([token]),
            "sequence": tok.decode(filled.tolist(), skip_special_tokens=one_mask)}


def _target_ids(tok, targets) -> list[int]:
    """Vocabulary ids of the targets; a word outside the vocabulary uses its first token (with a warning)."""
    vocab = tok.get_vocab()
    ids = []
    for t in [targets] if isinstance(targets, str) else targets:
        if t in vocab:
            ids.append(vocab[t])
            continue
        first = tok(t, add_special_tokens=False)["input_ids"][:1]
        if not first:
            warnings.warn(f"target '{t}' is not in the vocabulary and has no tokens; ignoring it", UserWarning)
            continue
        warnings.warn(f"target '{t}' is not in the vocabulary; using its first token "
                      f"'{tok.convert_ids_to_tokens(first[0])}'", UserWarning)
        ids.append(first[0])
    if not ids:
        raise InputError(f"none of the targets {targets!r} maps to a token. Fix: pass words from the vocabulary")
    return sorted(set(ids))
