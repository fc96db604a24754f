"""multiple-choice (no transformers pipeline exists): {'prompt', 'choices'} -> the best choice and the
softmax over choices. Each choice is encoded as the pair (prompt, choice), as DistilBertForMultipleChoice
is trained; a batch holds prompts with the same number of choices."""
from __future__ import annotations

from ..errors import InputError
from .encoding import Job, as_batch, check_text, encode, softmax


def prepare(p, inputs) -> Job:
    items, single = as_batch(inputs)
    prompts, choices = [], []
    for i, x in enumerate(items):
        ok = isinstance(x, dict) and set(x) == {"prompt", "choices"} and isinstance(x["choices"], (list, tuple))
        if not ok or not x["choices"]:
            raise InputError(f"input #{i} must be {{'prompt': str, 'choices': [str, ...]}} with at least one choice; "
                             f"got {x!r}")
        prompts.append(check_text(x["prompt"], f"input #{i} 'prompt'"))
        choices.append([check_text(c, f"input #{i} choice #{j}") for j, c in enumerate(x["choices"])])
    cut: list[int] = []
    flat = encode(p, [q for q, cs in zip(prompts, choices) for _ in cs], [c for cs in choices for c in cs], cut=cut)
    rows, owner, at = [], [], 0
    for i, cs in enumerate(choices):
        rows.append([e.ids for e in flat[at:at + len(cs)]])
        owner += [i] * len(cs)
        at += len(cs)

    def finish(outs):
        answers = []
        for cs, out in zip(choices, outs):
            scores = softmax(out["logits"][:len(cs)])
            answers.append({"choice": int(scores.argmax()), "scores": scores.tolist()})
        return answers[0] if single else answers

    return Job(rows, finish, groups=[len(cs) for cs in choices], truncated=tuple(sorted({owner[j] for j in cut})))
