"""question-answering, as transformers 4.x's QuestionAnsweringPipeline (removed in transformers 5): a long
context is cut into overlapping windows (max_seq_len tokens, doc_stride overlap); every window's best spans
are scored start_prob * end_prob, aligned to whole words, and equal answers from several spans add up."""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError, InputError
from .encoding import Job, TruncationWarning, as_batch, check_text


def prepare(p, inputs=None, *, question=None, context=None, top_k: int = 1, doc_stride: int | None = None,
            max_answer_len: int = 15, max_seq_len: int | None = None, max_question_len: int = 64,
            handle_impossible_answer: bool = False, align_to_words: bool = True) -> Job:
    max_seq_len = min(384, p.max_length) if max_seq_len is None else max_seq_len
    doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
    for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len), ("max_seq_len", max_seq_len),
                        ("max_question_len", max_question_len)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1; got {value!r}")
    if max_seq_len > p.max_length:
        raise ConfigError(f"max_seq_len={max_seq_len} is over this pipeline's max_length={p.max_length} (what the "
                          f"artifact accepts). Fix: pass max_seq_len <= {p.max_length}")
    if not isinstance(doc_stride, int) or not 0 <= doc_stride < max_seq_len:
        raise ConfigError(f"doc_stride must be an integer in [0, max_seq_len={max_seq_len}); got {doc_stride!r}")
    questions, contexts, single = _examples(inputs, question, context)
    cut: list[int] = []
    questions = _cut_questions(p, questions, max_question_len, max_seq_len, doc_stride, cut)

    tok = p.tokenizer
    enc = tok(questions, contexts, truncation="only_second", max_length=max_seq_len, stride=doc_stride,
              return_overflowing_tokens=True, verbose=False)
    windows, owner = enc.encodings, enc["overflow_to_sample_mapping"]

    def finish(outs):
        per_example: list[list] = [[] for _ in questions]
        for w, i, out in zip(windows, owner, outs):
            per_example[i].append((w, out))
        answers = [_answer(tok, contexts[i], spans, top_k, max_answer_len, handle_impossible_answer, align_to_words)
                   for i, spans in enumerate(per_example)]
        return answers[0] if single or len(answers) == 1 else answers  # the pipeline unwraps a list of one

    return Job([w.ids for w in windows], finish, truncated=tuple(cut))


def _examples(inputs, question, context) -> tuple[list[str], list[str], bool]:
    if inputs is None:
        if question is None or context is None:
            raise InputError("question-answering needs question= and context= (str or lists), or "
                             "{'question': ..., 'context': ...} dicts")
        if isinstance(question, str) and isinstance(context, str):
            inputs = {"question": question, "context": context}
        elif isinstance(question, (list, tuple)) and isinstance(context, str):
            inputs = [{"question": q, "context": context} for q in question]
        elif isinstance(question, (list, tuple)) and isinstance(context, (list, tuple)):
            if len(question) != len(context):
                raise InputError(f"got {len(question)} questions and {len(context)} contexts; expected one context "
                                 f"per question, or one context for all")
            inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
        else:
            raise InputError(f"question= and context= must be strings or lists of strings; got "
                             f"{type(question).__name__} and {type(context).__name__}")
    elif question is not None or context is not None:
        raise InputError("pass either inputs or question=/context=, not both")
    items, single = as_batch(inputs)
    for i, x in enumerate(items):
        if not isinstance(x, dict) or set(x) != {"question", "context"}:
            raise InputError(f"input #{i} must be {{'question': str, 'context': str}}; got {x!r}")
    return ([check_text(x["question"], f"input #{i} question") for i, x in enumerate(items)],
            [check_text(x["context"], f"input #{i} context") for i, x in enumerate(items)], single)


def _cut_questions(p, questions: list[str], max_question_len: int, max_seq_len: int, doc_stride: int,
                   cut: list) -> list[str]:
    """Questions over max_question_len tokens are cut (or rejected, on_overflow='error'; their indices go to `cut`);
    what is left of each window must hold more than doc_stride context tokens."""
    tok = p.tokenizer
    room = max_seq_len - tok.num_special_tokens_to_add(pair=True) - doc_stride
    out = []
    for i, (q, e) in enumerate(zip(questions, tok(questions, add_special_tokens=False, verbose=False).encodings)):
        n = len(e.ids)
        if n > max_question_len:
            what = f"question #{i} has {n} tokens, over max_question_len={max_question_len}"
            if p.on_overflow == "error":
                raise InputError(f"{what}. Fix: shorten it, raise max_question_len, or use on_overflow='truncate'")
            warnings.warn(f"{what}: truncated to {max_question_len} tokens. Pass on_overflow='error' to reject "
                          f"over-long questions instead", TruncationWarning, stacklevel=4)
            cut.append(i)
            q, n = q[:e.offsets[max_question_len - 1][1]], max_question_len
        if n >= room:
            raise InputError(f"question #{i} has {n} tokens; with max_seq_len={max_seq_len} and "
                             f"doc_stride={doc_stride} a window has room for {max(room, 0)} question tokens and "
                             f"the stride. Fix: shorten the question, lower max_question_len or doc_stride")
        out.append(q)
    return out


def _answer(tok, context: str, spans: list, top_k: int, max_answer_len: int, impossible: bool, align: bool):
    """The pipeline's postprocess over all windows of one example."""
    min_null = 1e6
    answers: list[dict] = []
    for enc, out in spans:
        n = len(enc.ids)
        allowed = np.array([s == 1 for s in enc.sequence_ids])  # context tokens ...
        allowed[np.asarray(enc.ids) == tok.cls_token_id] = True  # ... and [CLS] (the "no answer" slot)
        start = _probs(np.where(allowed, out["start_logits"][:n], -10000.0))
        end = _probs(np.where(allowed, out["end_logits"][:n], -10000.0))
        if impossible:
            min_null = min(min_null, float(start[0] * end[0]))
        start[0] = end[0] = 0.0
        for s, e, score in _best_spans(start, end, allowed, top_k * 2 + 10 if align else top_k, max_answer_len):
            a, b = _chars(enc, s, e, align)
            text = context[a:b]
            same = next((x for x in answers if x["answer"].lower() == text.lower()), None)
            if same:
                same["score"] += score
            else:
                answers.append({"score": score, "start": a, "end": b, "answer": text})
    if impossible:
        answers.append({"score": min_null, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]
    return answers[0] if len(answers) == 1 else answers


def _probs(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def _best_spans(start: np.ndarray, end: np.ndarray, allowed: np.ndarray, k: int, max_answer_len: int):
    """Top-k (start, end, score) with start <= end < start + max_answer_len, both ends allowed."""
    cand = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    flat = cand.ravel()
    if k == 1:
        idx = np.array([np.argmax(flat)])
    elif len(flat) <= k:
        idx = np.argsort(-flat)
    else:
        idx = np.argpartition(-flat, k)[:k]
        idx = idx[np.argsort(-flat[idx])]
    starts, ends = np.unravel_index(idx, cand.shape)
    keep = allowed[starts] & allowed[ends]
    return [(int(s), int(e), float(cand[s, e])) for s, e in zip(starts[keep], ends[keep])]


def _chars(enc, s: int, e: int, align: bool) -> tuple[int, int]:
    """Character span of tokens s..e in the context, widened to whole words when align."""
    if align:
        ws, we = enc.token_to_word(s), enc.token_to_word(e)
        a = None if ws is None else enc.word_to_chars(ws, 1)
        b = None if we is None else enc.word_to_chars(we, 1)
        if a is not None and b is not None:
            return a[0], b[1]
    return enc.offsets[s][0], enc.offsets[e][1]
