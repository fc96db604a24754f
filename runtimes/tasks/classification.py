"""text-classification, as transformers' TextClassificationPipeline: str or {'text', 'text_pair'} inputs."""
from __future__ import annotations

from ..errors import ConfigError, InputError
from .encoding import Job, as_batch, check_text, encode, label_names, sigmoid, softmax

FUNCTIONS = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: x}
_UNSET = object()  # top_k not given: the pipeline's legacy top-1 answer shape


def prepare(p, inputs, *, top_k=_UNSET, function_to_apply: str | None = None) -> Job:
    items, single = as_batch(inputs)
    texts, pairs = zip(*(_split(x, i) for i, x in enumerate(items)))
    fn_name = None if function_to_apply is None else str(getattr(function_to_apply, "value", function_to_apply)).lower()
    if fn_name is not None and fn_name not in FUNCTIONS:
        raise ConfigError(f"function_to_apply='{function_to_apply}' is not an option. Expected one of: "
                          f"{', '.join(FUNCTIONS)} (or None for the model's default)")
    if top_k is not _UNSET and top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1 or None (all labels); got {top_k!r}")
    cut: list[int] = []
    encs = encode(p, texts, pairs, cut=cut)

    def finish(outs):
        answers = [_answer(p, out["logits"], fn_name, top_k) for out in outs]
        if not single:
            return answers
        # the pipeline wraps a lone str's legacy answer in a list, but not a lone pair's
        return [answers[0]] if top_k is _UNSET and isinstance(inputs, str) else answers[0]

    return Job([e.ids for e in encs], finish, truncated=tuple(cut))


def _answer(p, logits, fn_name: str | None, top_k):
    scores = FUNCTIONS[fn_name or _default_function(p, len(logits))](logits)
    labels = label_names(p, len(scores))
    if top_k is _UNSET:
        best = int(scores.argmax())
        return {"label": labels[best], "score": float(scores[best])}
    ranked = sorted(({"label": l, "score": float(s)} for l, s in zip(labels, scores)),
                    key=lambda d: d["score"], reverse=True)
    return ranked if top_k is None else ranked[:top_k]


def _split(x, i: int) -> tuple[str, str | None]:
    if isinstance(x, dict):
        if "text" not in x or set(x) - {"text", "text_pair"}:
            raise InputError(f"input #{i} is a dict with keys {sorted(x)}; a text pair is "
                             f"{{'text': ..., 'text_pair': ...}}")
        pair = x.get("text_pair")
        pair = None if pair is None else check_text(pair, f"input #{i} 'text_pair'")
        return check_text(x["text"], f"input #{i} 'text'"), pair
    return check_text(x, f"input #{i}"), None


def _default_function(p, num_labels: int) -> str:
    """The pipeline's rule: regression -> none; multi-label or one label -> sigmoid; else softmax."""
    if p.problem_type == "regression":
        return "none"
    if p.problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"
