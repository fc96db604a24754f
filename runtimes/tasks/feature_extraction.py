"""feature-extraction, as transformers' FeatureExtractionPipeline: per input [1][tokens][hidden] floats."""
from __future__ import annotations

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
