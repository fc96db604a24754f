"""Each parity metric on hand-made outputs with a known answer, and a case where it must fail."""
import numpy as np
import pytest

from runtimes.judging import metrics
from benchmarks.parity.comparator import CaseResult, judge
from runtimes.judging.tolerances import DEFAULTS, parse_overrides, tolerance_for
from runtimes.errors import ConfigError

TOL = DEFAULTS["text-classification", "fp32"]


def repro(case):
    return f"distilbert-deploy parity ART --case {case}"


def num(ref, got):
    return metrics.numeric(np.array(ref), np.array(got))


def test_numeric_known_answer_and_mask():
    n = metrics.numeric(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 2.5], [3.0, 99.0]]),
                        mask=np.array([True, False]))
    assert (n.max_abs, n.mean_abs, n.count) == (0.5, 0.25, 2)  # the masked (padding) row is ignored
    assert n.rel_err == pytest.approx(0.5 / np.sqrt(5))
    assert metrics.numeric(np.ones(3), np.full(3, np.nan)).max_abs == float("inf")


def test_cosine_known_answers():
    assert metrics.cosine([1, 0], [0, 1]) == 0.0
    assert metrics.cosine([1, 2], [2, 4]) == pytest.approx(1.0)
    assert metrics.cosine([0, 0], [0, 0]) == 1.0
    np.testing.assert_allclose(metrics.cosine([[1, 0], [1, 1]], [[1, 0], [-1, -1]]), [1.0, -1.0])


def test_agreement_counts_only_decisive_reference_decisions():
    a = metrics.agreement(["a", "b", "c", "d"], ["a", "x", "c", "y"], ref_margin=[0.9, 0.01, 0.5, 0.8], tie_margin=0.05)
    assert (a.rate, a.counted, a.total, a.disagree) == (pytest.approx(2 / 3), 3, 4, (3,))
    assert metrics.agreement([1, 2], [1, 2]).rate == 1.0


def test_topk_and_span_metrics():
    assert metrics.topk_ids(np.array([0.1, 0.9, 0.5, 0.7]), 2).tolist() == [1, 3]
    assert metrics.topk_overlap([[1, 2, 3, 4, 5]], [[1, 2, 3, 9, 8]]).tolist() == [0.6]
    assert metrics.span_f1("the Ming dynasty", "Ming dynasty") == 1.0  # articles do not count
    assert metrics.span_f1("Gustave Eiffel", "Eiffel") == pytest.approx(2 / 3)
    assert metrics.span_f1("1953", "Nepal") == 0.0
    assert metrics.accuracy_delta(["a", "b", "a"], ["a", "a", "a"], ["a", "b", "b"]) == pytest.approx((2 / 3, 1 / 3, -1 / 3))


def test_margins():
    np.testing.assert_allclose(metrics.margins(np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]])), [0.5, 0.0])


# --------------------------------------------------------------- each head's check, judged

def checks(task, results, tol):
    cs, fails = judge(task, results, tol, repro)
    return {c.name: c for c in cs}, fails


def test_text_classification_label_agreement_and_accuracy_delta():
    good = [CaseResult("a", num([1.0, 2.0], [1.0, 2.0]), [("pos", "pos", 0.9)], pred=("pos", "pos", "pos")),
            CaseResult("b", num([3.0, 1.0], [3.0, 1.0]), [("neg", "neg", 0.9)], pred=("neg", "neg", "pos"))]
    c, fails = checks("text-classification", good, TOL)
    assert c["label_agreement"].passed and c["accuracy_delta"].value == 0.0 and not fails
    bad = [good[0], CaseResult("b", num([3.0, 1.0], [1.0, 3.0]), [("neg", "pos", 0.9)], pred=("neg", "pos", "pos"))]
    c, fails = checks("text-classification", bad, TOL)
    assert c["label_agreement"].value == 0.5 and c["label_agreement"].passed is False
    assert c["max_abs"].value == 2.0 and c["max_abs"].passed is False
    assert c["accuracy_delta"].value == 0.5  # the candidate is luckier here: an improvement is not a failure
    assert {f.case for f in fails} == {"b"} and all("--case b" in f.repro for f in fails)


def test_accuracy_drop_fails_low_precision():
    tol = tolerance_for("text-classification", "bf16")
    rs = [CaseResult(str(i), num([0.0], [0.0]), [("a", "a" if i else "b", 0.01)], pred=("a", "a" if i else "b", "a"))
          for i in range(10)]
    c, _ = checks("text-classification", rs, tol)
    assert c["label_agreement"].value == 1.0  # the flip was a near-tie: not counted ...
    assert c["accuracy_delta"].value == pytest.approx(-0.1) and c["accuracy_delta"].passed is False  # ... the delta is
    assert c["max_abs"].passed is None  # reported only


def test_accuracy_drop_of_exactly_the_limit_passes():
    """3 of 300 tweets lost is a 1-point drop: it meets a 1-point limit (float subtraction of the two accuracies
    gave -0.010000000000000009, which failed it)."""
    tol = tolerance_for("text-classification", "int8")
    assert tol.max_accuracy_drop == 0.01
    gold = ["a"] * 300
    ref = ["a"] * 196 + ["b"] * 104
    for lost, ok in ((3, True), (4, False)):
        got = ["b"] * lost + ref[lost:]
        rs = [CaseResult(str(i), num([0.0], [0.0]), [(r, g, 0.01)], pred=(r, g, y))
              for i, (r, g, y) in enumerate(zip(ref, got, gold))]
        c, _ = checks("text-classification", rs, tol)
        assert c["accuracy_delta"].value == -lost / 300 and c["accuracy_delta"].passed is ok, lost
    assert (196 - 3) / 300 - 196 / 300 < -0.01  # what the old subtraction gave


def test_token_classification_per_token_agreement():
    rs = [CaseResult("t", num([0.0], [0.0]), [("O", "O", 1.0), ("B-PER", "B-PER", 1.0), ("I-PER", "O", 0.6)])]
    c, fails = checks("token-classification", rs, TOL)
    assert c["token_label_agreement"].value == pytest.approx(2 / 3) and c["token_label_agreement"].passed is False
    assert "I-PER" in fails[0].detail


def test_question_answering_exact_span_and_f1():
    ok = CaseResult("q1", num([0.0], [0.0]), [((3, 5), (3, 5), 1.0)], span_f1=[(1.0, 1.0)])
    c, _ = checks("question-answering", [ok], TOL)
    assert c["exact_span_agreement"].passed and c["span_f1"].value == 1.0
    off = CaseResult("q2", num([0.0], [0.0]), [((3, 5), (4, 5), 1.0)], span_f1=[(metrics.span_f1("Gustave Eiffel", "Eiffel"), 1.0)])
    c, _ = checks("question-answering", [ok, off], TOL)
    assert c["exact_span_agreement"].value == 0.5 and c["span_f1"].value == pytest.approx(5 / 6)
    assert c["span_f1"].passed is False


def test_fill_mask_top1_and_top5():
    rs = [CaseResult("m", num([0.0], [0.0]), [(7, 7, 0.5)], top5=[1.0]),
          CaseResult("n", num([0.0], [0.0]), [(7, 8, 0.5)], top5=[0.6])]
    c, _ = checks("fill-mask", rs, TOL)
    assert c["top1_agreement"].value == 0.5 and c["top5_overlap"].value == pytest.approx(0.8)
    assert c["top5_overlap"].passed is False
    c, _ = checks("fill-mask", rs, tolerance_for("fill-mask", "int8", parse_overrides(["min_agreement=0.5"])))
    assert c["top1_agreement"].passed and c["top5_overlap"].passed


def test_feature_extraction_embedding_cosine_and_multiple_choice():
    c, _ = checks("feature-extraction", [CaseResult("e", num([1.0, 0.0], [1.0, 0.0]), emb_cosine=1.0)], TOL)
    assert c["embedding_cosine"].passed
    c, _ = checks("feature-extraction", [CaseResult("e", num([1.0, 0.0], [0.9, 0.1]), emb_cosine=0.99)], TOL)
    assert c["embedding_cosine"].passed is False and c["cosine"].passed is False
    c, _ = checks("multiple-choice", [CaseResult("c", num([1.0], [1.0]), [(0, 1, 0.3)])], TOL)
    assert c["choice_agreement"].passed is False


def _flat(task, n, flips, cosine_ok=True, margin=0.001):
    """n cases of a near-uniform head (every reference margin `margin`), `flips` answers flipped."""
    got = [1.0, 0.0] if cosine_ok else [0.0, 1.0]
    return [CaseResult(f"c{i}", num([1.0, 0.0], got if i == 0 else [1.0, 0.0]), [(0, int(i < flips), margin)],
                       span_f1=[(0.0 if i < flips else 1.0, margin)]) for i in range(n)]


@pytest.mark.parametrize("task", ["multiple-choice", "question-answering", "token-classification"])
def test_flat_head_is_judged_by_its_outputs_not_by_near_tie_answers(task):
    """An untrained head: no decision is decisive, so agreement must not pass on nothing; the head's raw
    outputs are judged instead, and fail when they drift."""
    tol = tolerance_for(task, "int8")
    c, _ = checks(task, _flat(task, 20, flips=5), tol)
    name = {"multiple-choice": "choice_agreement", "question-answering": "exact_span_agreement",
            "token-classification": "token_label_agreement"}[task]
    assert c[name].passed is None and "not judged" in c[name].detail  # 0/0 decisive: neither pass nor fail
    assert c["flat_head_cosine"].passed and c["flat_head_cosine"].limit == tol.min_embedding_cosine
    assert "span_f1" not in c  # near-tie spans are not scored either
    c, fails = checks(task, _flat(task, 20, flips=0, cosine_ok=False), tol)
    assert c["flat_head_cosine"].passed is False and fails and fails[0].case == "c0"
    # a decisive head is judged by its answers, and no cosine check stands in
    c, _ = checks(task, _flat(task, 20, flips=5, margin=0.9), tol)
    assert c[name].passed is False and c[name].value == 0.75 and "flat_head_cosine" not in c


def test_question_answering_span_margin_comes_from_start_and_end_logits():
    from benchmarks.parity.comparator import _decide

    feed = {"attention_mask": np.array([[1, 1, 1, 0]]), "input_ids": np.array([[101, 7, 102, 0]])}
    flat = {"start_logits": np.array([[0.1, 0.11, 0.1, 9.0]]), "end_logits": np.array([[0.1, 5.0, 0.1, 9.0]])}
    res = CaseResult("q")
    _decide("question-answering", res, feed, flat, flat, ((), ()), set())
    assert res.span_margin < 0.01  # start is a near-tie (padding's 9.0 is not a position), so the span is too
    sharp = {**flat, "start_logits": np.array([[0.1, 6.0, 0.1, 0.0]])}
    res = CaseResult("q")
    _decide("question-answering", res, feed, sharp, sharp, ((), ()), set())
    assert res.span_margin > 0.9


def test_errors_fail_the_target():
    c, fails = checks("text-classification", [CaseResult("x", error="InputError: boom")], TOL)
    assert c["errors"].passed is False and fails[0].check == "error"


def test_tolerance_overrides():
    o = parse_overrides(["bf16.min_agreement=0.9", "question-answering.fp32.max_abs=none", "tie_margin=0.1"])
    assert tolerance_for("text-classification", "bf16", o).min_agreement == 0.9
    assert tolerance_for("text-classification", "fp32", o).min_agreement == 1.0
    assert tolerance_for("question-answering", "fp32", o).max_abs is None
    assert tolerance_for("fill-mask", "fp32", o).tie_margin == 0.1
    for bad in ("max_abs", "nope=1", "fp64.max_abs=1", "max_abs=abc", "x.y.z.max_abs=1"):
        with pytest.raises(ConfigError):
            parse_overrides([bad])


def test_merge_equals_concatenation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 50)).astype(np.float32), rng.normal(size=(2, 50)).astype(np.float32)
    whole = metrics.numeric(a.ravel(), b.ravel())
    merged = metrics.merge([metrics.numeric(a[0], b[0]), metrics.numeric(a[1], b[1])])
    for field in ("max_abs", "mean_abs", "rel_err", "cosine", "count"):
        assert getattr(merged, field) == pytest.approx(getattr(whole, field))
