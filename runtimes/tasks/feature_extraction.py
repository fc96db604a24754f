"""feature-extraction, as transformers' FeatureExtractionPipeline: per input [1][tokens][hidden] floats."""
from __future__ import annotations

from .encoding import as_batch, check_text, encode, infer


def run(p, inputs):
    texts, single = as_batch(inputs)
    texts = [check_text(t, f"input #{i}") for i, t in enumerate(texts)]
    encs = encode(p, texts)
    answers = [out["last_hidden_state"][None, :len(e.ids)].tolist()
               for e, out in zip(encs, infer(p, [e.ids for e in encs]))]
    return answers[0] if single else answers
