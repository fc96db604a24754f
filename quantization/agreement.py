"""The metric that INT8 accuracy control holds within max_drop (absolute) of fp32, for every task: the OpenVINO
(nncf.quantize_with_accuracy_control) and Neural Compressor (autotune) int8-accuracy recipes.

Only the tweet classifier has gold labels, so text-classification keeps accuracy on them; every other head is judged
by task-aware AGREEMENT WITH ITS FP32 PARENT on the same validation tweets (a float in [0, 1], higher is better):

  token-classification  token_label_agreement    real tokens whose argmax label equals the fp32 parent's
  fill-mask             masked_token_agreement   [MASK] positions (one middle word masked per tweet, like
                                                 ort_accuracy._masked) whose top-1 token equals fp32's
  question-answering    span_position_agreement  start/end argmax positions over each row's real tokens equal to fp32's
                                                 (tweet i as the question, tweets i+1 and i+2 as the context)
  feature-extraction    token_cosine             mean over real tokens of cos(last_hidden_state, fp32's)
  multiple-choice       choice_agreement         prompts (tweets i and i+1 as its 2 choices) whose argmax choice
                                                 equals fp32's

As in the parity suite, only decisions where fp32 is decisive count, and a head with no decisive decisions (an
untrained head: the default model's token, QA, multiple-choice and MLM heads) is held by the cosine of its raw
outputs instead (references()).

The scoring itself (judged, score) lives in runtimes/judging/agreement.py, numpy-only, which quantization/inc_worker.py
loads inside the Neural Compressor venv, so both backends score identically. Numpy only here too (and the parity
suite's tie rule, runtimes/judging): the backends run the models and hand their outputs in."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from runtimes.judging.agreement import UNDECIDED, judged, score  # the one implementation (inc_worker loads it too)

from .ort_accuracy import VALIDATION_OFFSET, VALIDATION_SIZE, _masked, _qa_pairs

METRICS = {  # task -> (metric name, what the manifest says it is)
    "text-classification": ("accuracy", "accuracy vs gold labels"),
    "token-classification": ("token_label_agreement", "token label agreement with the fp32 parent (argmax label "
                                                      "of each real token)"),
    "fill-mask": ("masked_token_agreement", "top-1 token agreement with the fp32 parent at the [MASK] position "
                                            "(the middle word of each tweet masked)"),
    "question-answering": ("span_position_agreement", "start/end position agreement with the fp32 parent (argmax "
                                                      "over each row's real tokens; rows are question/context pairs of tweets)"),
    "feature-extraction": ("token_cosine", "mean cosine similarity of last_hidden_state to the fp32 parent's, over "
                                           "real tokens"),
    "multiple-choice": ("choice_agreement", "chosen-answer agreement with the fp32 parent (tweets i and i+1 as the 2 "
                                            "choices of prompt i)"),
}


def metric(task: str) -> tuple[str, str]:
    """(name, description) of the metric int8-accuracy controls for `task`."""
    return METRICS[task]


# Rows for the agreement metrics (unlabelled heads): each row judges many decisions (every real token, two span
# ends), and NNCF's accuracy control re-validates once per reverted layer, so 100 rows keep a build to minutes.
UNLABELLED_ROWS = 100


def validation_rows(task: str) -> int:
    """Eval rows: the labelled classifier uses as many as ORT accuracy control (ort_accuracy.VALIDATION_SIZE)."""
    return VALIDATION_SIZE.get(task, UNLABELLED_ROWS)


def texts_needed(task: str, rows: int) -> int:
    """Tweets to read for `rows` validation rows (multiple choice pairs tweet i with tweet i+1)."""
    return rows + 1 if task == "multiple-choice" else rows


def validation_tweets(task: str, calibration_size: int) -> tuple[list, str]:
    """(train tweets for the int8-accuracy eval set, where they come from). They start at
    ort_accuracy.VALIDATION_OFFSET (or after the calibration slice when it is longer), so they are disjoint from
    calibration, from the tweets the sentiment head was trained on, and from the held-out split parity judges."""
    from sources.tweets import split

    start = max(VALIDATION_OFFSET, calibration_size)
    tweets = split()[0][start:start + texts_needed(task, validation_rows(task))]
    return tweets, (f"train tweets sources.tweets.split()[0][{start}:{start + len(tweets)}], disjoint from "
                    f"calibration, from the head's training tweets and from the held-out split")


def encode(task: str, texts: list[str], tokenizer, max_length: int) -> dict[str, np.ndarray]:
    """The validation rows, padded to the longest: input_ids and attention_mask ([rows, seq]; multiple choice
    [rows, 2, seq] from len(texts) - 1 prompts), lengths (real tokens per row) and where (the positions judged:
    real tokens, or the [MASK] positions for fill-mask)."""
    if task == "fill-mask":  # one [MASK] per tweet, on the middle word, like a fill-mask request
        texts = [_masked(t, tokenizer.mask_token) for t in texts]
    if task == "question-answering":  # pairs, as QA runs: tweet i asks, tweets i+1 and i+2 are the context
        questions, contexts = zip(*_qa_pairs(list(texts)))
        enc = tokenizer(list(questions), list(contexts), truncation="only_second", max_length=max_length,
                        padding="longest", return_tensors="np")
    else:
        enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding="longest", return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    where = ids == tokenizer.mask_token_id if task == "fill-mask" else mask.astype(bool)
    if task == "multiple-choice":
        ids, mask = (np.stack([x[:-1], x[1:]], axis=1) for x in (ids, mask))
        where = mask.max(axis=1).astype(bool)  # unused by choice_agreement
    return {"input_ids": ids, "attention_mask": mask, "where": where,
            "lengths": mask.reshape(len(ids), -1, mask.shape[-1]).sum(-1).max(-1).astype(np.int64)}


def batches(rows: dict[str, np.ndarray], size: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """(feed, where) per batch of `size` rows, trimmed to the batch's longest row (the worker batches the same way)."""
    for s in range(0, len(rows["lengths"]), size):
        n = int(rows["lengths"][s:s + size].max())
        feed = {k: rows[k][s:s + size, ..., :n] for k in ("input_ids", "attention_mask")}
        yield feed, rows["where"][s:s + size, :n]


FLAT = {"token-classification": ("logit_cosine", "per real token"), "fill-mask": ("logit_cosine", "per [MASK]"),
        "multiple-choice": ("row_logit_cosine", "per prompt, over its choices"),
        "question-answering": ("row_logit_cosine", "per row, start and end logits over its real tokens")}


def margins(name: str, outputs: list, where: np.ndarray) -> np.ndarray:
    """How decisive each decision `judged(name, ...)` returns is: the top-two probability gap, as parity measures it."""
    from runtimes.judging.metrics import margins as top_two_gap
    from runtimes.tasks.encoding import softmax

    def gap(logits):
        return top_two_gap(softmax(logits))

    x = np.asarray(outputs[0], np.float64)
    if name == "choice_agreement":
        return gap(x)
    if name in ("token_label_agreement", "masked_token_agreement"):
        return gap(x[where.astype(bool)])
    if name == "span_position_agreement":
        real = where.astype(bool)
        return np.stack([gap(np.where(real, np.asarray(o, np.float64), -np.inf)) for o in outputs[:2]], axis=-1)
    raise ValueError(f"'{name}' judges no decisions")


def references(task: str, run: Callable[[dict], list], rows: dict[str, np.ndarray], size: int
               ) -> tuple[str, str, list[np.ndarray]]:
    """(metric, its description, the fp32 parent's judged values per batch of `size` rows). run(feed) -> the head's
    outputs (get_head(task).outputs order) of the fp32 model. Like the parity suite, a decision counts only where
    the parent is decisive (top-two probability gap >= parity's int8 tie_margin; near-ties become UNDECIDED).
    A head with fewer than MIN_DECISIVE decisive decisions (untrained: near-uniform outputs) has no answers to
    agree on, so its raw outputs are held instead: mean cosine with the parent's (FLAT)."""
    from runtimes.judging.tolerances import MIN_DECISIVE, tolerance_for

    name, description = metric(task)
    outs = [(run(feed), where) for feed, where in batches(rows, size)]
    if task in FLAT:
        tie = tolerance_for(task, "int8").tie_margin
        gaps = [margins(name, o, w) for o, w in outs]
        decisive = int(sum((g >= tie).sum() for g in gaps))
        if decisive >= MIN_DECISIVE:
            refs = [np.where(g >= tie, judged(name, o, w), UNDECIDED) for (o, w), g in zip(outs, gaps)]
            return name, f"{description}; decisions where fp32's top-two probability gap is >= {tie}", refs
        total = int(sum(g.size for g in gaps))
        name, per = FLAT[task]
        description = (f"cosine of the head's raw outputs with the fp32 parent's, {per}: the parent's answers are "
                       f"near-ties ({decisive} of {total} decisions have a top-two probability gap >= {tie}), so "
                       f"there is no answer to agree on")
    return name, description, [judged(name, o, w) for o, w in outs]


def agreement(name: str, run: Callable[[dict], list], items: list) -> tuple[float, list[float]]:
    """(metric `name`, per-item values) of a model over items (feed, where, fp32 reference of that item); an item
    with nothing to judge (a truncated [MASK], near-ties only) counts 1.0 on its own and nothing in the total."""
    total, count, values = 0.0, 0, []
    for feed, where, ref in items:
        t, c = score(name, judged(name, run(feed), where), ref)
        total, count = total + t, count + c
        values.append(t / c if c else 1.0)
    return (total / count if count else 0.0), values
