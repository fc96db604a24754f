"""The comparator (after Polygraphy's Comparator.run + compare_accuracy): the PyTorch fp32 reference and
a candidate runtime answer the same cases through the same task layer; raw outputs are compared on real
tokens only and answers with each head's metric, then judged against a Tolerance."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtimes.heads import get_head
from runtimes.judging import metrics
from runtimes.judging.tolerances import MIN_DECISIVE, Tolerance
from runtimes.tasks.encoding import softmax

from .corpus import Case
from .report import CaseFailure, Check


class Recorder:
    """Wraps anything with infer(feed) -> outputs and keeps every (feed, outputs) pair it sees."""

    def __init__(self, runtime):
        self.runtime, self.calls = runtime, []

    def infer(self, feed):
        out = self.runtime.infer(feed)
        self.calls.append((feed, out))
        return out

    def take(self) -> list:
        calls, self.calls = self.calls, []
        return calls


class TorchReference:
    """The reference: a transformers head model in fp32 on CPU, with the Runtime's infer signature."""

    def __init__(self, model, task: str):
        import torch

        self.torch, self.model, self.outputs = torch, model.float().eval().to("cpu"), get_head(task).outputs

    def infer(self, feed):
        torch = self.torch
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        return {n: out[n].numpy() for n in self.outputs}


@dataclass
class CaseResult:
    case: str
    numeric: metrics.Numeric | None = None
    decisions: list = field(default_factory=list)  # (reference, candidate, reference margin)
    span_f1: list = field(default_factory=list)  # (F1, reference margin)
    span_margin: float = 0.0  # question-answering: how decisive the reference's start/end positions are
    top5: list = field(default_factory=list)
    emb_cosine: float | None = None
    pred: tuple | None = None  # (reference label, candidate label, gold label)
    error: str | None = None


def run_case(pipe, case: Case, kwargs: dict) -> tuple[Any, list]:
    """Answers and the recorded (feed, outputs) calls of one case."""
    answers = pipe(case.input, **{**kwargs, **case.kwargs})
    return answers, pipe.runtime.take()


TASK_KWARGS = {"text-classification": {}, "token-classification": {}, "feature-extraction": {},
               "fill-mask": {"top_k": 5}, "question-answering": {}, "multiple-choice": {}}


def compare_case(task: str, case: Case, ref: tuple, got: tuple, labels: tuple, special_ids: set) -> CaseResult:
    """One case: raw outputs on real tokens, then the head's decisions."""
    (ref_ans, ref_calls), (got_ans, got_calls) = ref, got
    res = CaseResult(case.id)
    if len(ref_calls) != len(got_calls) or any(
            not np.array_equal(a[0]["input_ids"], b[0]["input_ids"]) for a, b in zip(ref_calls, got_calls)):
        res.error = "the candidate saw different token ids than the reference (tokenizer or max length differs)"
        return res
    head = get_head(task)
    parts = []
    for (feed, r_out), (_, g_out) in zip(ref_calls, got_calls):
        mask = feed["attention_mask"].astype(bool)
        for name, tail in zip(head.outputs, head.output_tail):
            r, g = np.asarray(r_out[name], np.float32), np.asarray(g_out[name], np.float32)
            if r.shape != g.shape:
                res.error = f"output '{name}' has shape {g.shape}, the reference {r.shape}"
                return res
            # padding positions are not compared
            parts.append(metrics.numeric(r, g, mask if tail.startswith("sequence") else None))
        _decide(task, res, feed, r_out, g_out, labels, special_ids)
    res.numeric = metrics.merge(parts)
    _answers(task, case, res, ref_ans, got_ans)
    return res


def _decide(task, res, feed, r_out, g_out, labels, special_ids) -> None:
    """Decisions from raw outputs with the head's rule (argmax), mapped through each side's labels."""
    ref_labels, got_labels = labels
    name = lambda names, i: names[i] if names else i  # noqa: E731
    mask = feed["attention_mask"].astype(bool)
    if task in ("text-classification", "multiple-choice"):
        r, g = r_out["logits"], g_out["logits"]
        for row_r, row_g in zip(r, g):
            res.decisions.append((name(ref_labels, int(row_r.argmax())), name(got_labels, int(row_g.argmax())),
                                  float(metrics.margins(softmax(row_r)))))
    elif task == "token-classification":
        real = mask & ~np.isin(feed["input_ids"], list(special_ids))
        for row_r, row_g, keep in zip(r_out["logits"], g_out["logits"], real):
            for tr, tg in zip(row_r[keep], row_g[keep]):
                res.decisions.append((name(ref_labels, int(tr.argmax())), name(got_labels, int(tg.argmax())),
                                      float(metrics.margins(softmax(tr)))))
    elif task == "question-answering":  # a span is as decisive as the less decisive of its start and end
        rows = [min(float(metrics.margins(softmax(r_out[n][i][row]))) for n in ("start_logits", "end_logits"))
                for i, row in enumerate(mask)]
        res.span_margin = max(res.span_margin, *rows)  # a context split into windows: its most decisive window
    elif task == "feature-extraction":
        cos = metrics.cosine(r_out["last_hidden_state"][mask], g_out["last_hidden_state"][mask])
        worst = float(np.min(cos))
        res.emb_cosine = worst if res.emb_cosine is None else min(res.emb_cosine, worst)


def _listed(case: Case, answers) -> list:
    return list(answers) if isinstance(case.input, list) else [answers]


def _answers(task, case, res, ref_ans, got_ans) -> None:
    """Decisions that only exist after the task layer: QA spans, fill-mask candidates, predicted labels."""
    if task == "question-answering":
        for r, g in zip(_listed(case, ref_ans), _listed(case, got_ans)):
            res.decisions.append(((r["start"], r["end"]), (g["start"], g["end"]), res.span_margin))
            res.span_f1.append((metrics.span_f1(r["answer"], g["answer"]), res.span_margin))
    elif task == "fill-mask":
        for r, g in zip(_listed(case, ref_ans), _listed(case, got_ans)):
            scores = sorted((c["score"] for c in r), reverse=True)
            res.decisions.append((r[0]["token"], g[0]["token"], scores[0] - scores[1] if len(scores) > 1 else 1.0))
            res.top5.append(float(metrics.topk_overlap([[c["token"] for c in r]], [[c["token"] for c in g]])[0]))
    elif task == "text-classification" and case.gold is not None:
        res.pred = (ref_ans[0]["label"], got_ans[0]["label"], case.gold)


# ------------------------------------------------------------------ judging a target's case results

AGREEMENT_NAME = {"text-classification": "label_agreement", "token-classification": "token_label_agreement",
                  "multiple-choice": "choice_agreement", "question-answering": "exact_span_agreement",
                  "fill-mask": "top1_agreement"}


def judge(task: str, results: list[CaseResult], tol: Tolerance, repro) -> tuple[list[Check], list[CaseFailure]]:
    """Aggregate case results into checks against `tol`; list the failing cases with their repro command."""
    checks, fails = [], []

    def check(name, value, limit, op, detail="", bad_cases=()):
        ok = None if limit is None else (value <= limit if op == "<=" else value >= limit)
        checks.append(Check(name, float(value), limit, op, ok, detail))
        if ok is False:
            fails.extend(CaseFailure(cid, name, why, repro(cid)) for cid, why in bad_cases)

    for r in results:
        if r.error:
            fails.append(CaseFailure(r.case, "error", r.error, repro(r.case)))
    ok = [r for r in results if r.error is None]
    checks.append(Check("errors", float(len(results) - len(ok)), 0.0, "<=", len(ok) == len(results)))
    if not ok:
        return checks, fails
    nums = [(r.case, r.numeric) for r in ok]
    total = sum(n.count for _, n in nums)
    check("max_abs", max(n.max_abs for _, n in nums), tol.max_abs, "<=", "over real tokens of every case",
          [(c, f"max abs error {n.max_abs:.3g}") for c, n in nums if tol.max_abs is not None and n.max_abs > tol.max_abs])
    check("mean_abs", sum(n.mean_abs * n.count for _, n in nums) / max(total, 1), None, "<=")
    check("rel_err", max(n.rel_err for _, n in nums), tol.max_rel_err, "<=", "worst case",
          [(c, f"relative error {n.rel_err:.3g}") for c, n in nums
           if tol.max_rel_err is not None and n.rel_err > tol.max_rel_err])
    check("cosine", min(n.cosine for _, n in nums), tol.min_cosine, ">=", "worst case",
          [(c, f"cosine {n.cosine:.6f}") for c, n in nums if tol.min_cosine is not None and n.cosine < tol.min_cosine])
    flat_head = False
    if task in AGREEMENT_NAME:
        owner = [r.case for r in ok for _ in r.decisions]
        flat = [d for r in ok for d in r.decisions]
        a = metrics.agreement([d[0] for d in flat], [d[1] for d in flat], [d[2] for d in flat], tol.tie_margin)
        detail = f"{a.counted - len(a.disagree)}/{a.counted} decisive decisions agree ({a.total} in all)"
        flat_head = a.counted < MIN_DECISIVE <= a.total
        if flat_head:  # every answer is a near-tie (an untrained head): agreement would pass on nothing
            detail += f"; not judged: under {MIN_DECISIVE} decisive decisions, the head's outputs are judged instead"
        check(AGREEMENT_NAME[task], a.rate, None if flat_head else tol.min_agreement, ">=", detail,
              [(owner[i], f"reference {flat[i][0]!r}, candidate {flat[i][1]!r} (reference margin {flat[i][2]:.3g})")
               for i in a.disagree])
    if task == "question-answering" and not flat_head:  # like the spans: answers on decisive reference spans only
        f1 = [(r.case, x) for r in ok for x, margin in r.span_f1 if margin >= tol.tie_margin]
        if f1:
            check("span_f1", float(np.mean([x for _, x in f1])), tol.min_span_f1, ">=",
                  f"mean over {len(f1)} decisive answers; worst {min(x for _, x in f1):.3f}",
                  [(c, f"span F1 {x:.3f}") for c, x in f1 if x < 1.0])
    if flat_head and tol.min_embedding_cosine is not None:
        check("flat_head_cosine", min(n.cosine for _, n in nums), tol.min_embedding_cosine, ">=",
              "worst case cosine of the head's raw outputs, at the precision's embedding bar: judged because the "
              "reference head has too few decisive decisions to judge answers by",
              [(c, f"cosine {n.cosine:.6f}") for c, n in nums if n.cosine < tol.min_embedding_cosine])
    if task == "fill-mask":
        t5 = [(r.case, x) for r in ok for x in r.top5]
        check("top5_overlap", float(np.mean([x for _, x in t5])), tol.min_top5_overlap, ">=",
              f"mean over {len(t5)} masks; worst {min(x for _, x in t5):.2f}",
              [(c, f"top-5 overlap {x:.2f}") for c, x in t5 if x < 1.0])
    if task == "feature-extraction":
        cos = [(r.case, r.emb_cosine) for r in ok]
        check("embedding_cosine", min(x for _, x in cos), tol.min_embedding_cosine, ">=", "worst token of any case",
              [(c, f"token cosine {x:.6f}") for c, x in cos
               if tol.min_embedding_cosine is not None and x < tol.min_embedding_cosine])
    preds = [r.pred for r in ok if r.pred is not None]
    if preds:
        ref_acc, got_acc, delta = metrics.accuracy_delta(*zip(*preds))
        check("accuracy_delta", delta, None if tol.max_accuracy_drop is None else 0.0 - tol.max_accuracy_drop, ">=",
              f"accuracy on {len(preds)} held-out labelled tweets: reference {ref_acc:.4f}, candidate {got_acc:.4f}")
    return checks, fails
