"""The int8-accuracy metrics (quantization/agreement.py, implemented in runtimes/judging/agreement.py) on hand-made
outputs whose answer is known."""
import numpy as np
import pytest

from quantization.agreement import METRICS, UNDECIDED, agreement, batches, judged, metric, references, score


def test_every_task_has_a_metric():
    from runtimes.heads import TASKS

    assert set(METRICS) == set(TASKS)
    assert metric("text-classification") == ("accuracy", "accuracy vs gold labels")


def test_token_label_agreement_counts_real_tokens_only():
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    labels = lambda ids: np.eye(3)[np.array(ids)][None]  # one row's logits [1, seq, 3], argmax = ids
    ref = judged("token_label_agreement", [np.concatenate([labels([0, 1, 2, 0]), labels([2, 0, 0, 0])])], mask)
    got = judged("token_label_agreement", [np.concatenate([labels([0, 1, 0, 1]), labels([2, 1, 1, 1])])], mask)
    assert ref.tolist() == [0, 1, 2, 2]  # the 4 real tokens; the padding's disagreement is not judged
    assert score("token_label_agreement", got, ref) == (3.0, 4)  # 3 of 4 real tokens agree -> 0.75


def test_masked_token_agreement_judges_the_mask_positions():
    vocab = 5
    logits = np.zeros((2, 3, vocab))
    logits[0, 1, 4] = logits[1, 2, 3] = 1  # top-1 at the [MASK] positions: 4 and 3
    where = np.array([[0, 1, 0], [0, 0, 1]], bool)
    other = logits.copy()
    other[1, 2, 0] = 2  # the second row's top-1 moves
    ref = judged("masked_token_agreement", [logits], where)
    assert ref.tolist() == [4, 3]
    assert score("masked_token_agreement", judged("masked_token_agreement", [other], where), ref) == (1.0, 2)


def test_span_positions_ignore_padding():
    mask = np.array([[1, 1, 1, 0]], bool)
    start, end = np.array([[0.0, 3.0, 1.0, 9.0]]), np.array([[0.0, 1.0, 2.0, 9.0]])  # padding's 9 never wins
    ref = judged("span_position_agreement", [start, end], mask)
    assert ref.tolist() == [[1, 2]]
    moved_end = judged("span_position_agreement", [start, np.array([[5.0, 1.0, 2.0, 0.0]])], mask)
    assert score("span_position_agreement", moved_end, ref) == (1.0, 2)  # start agrees, end moved -> 0.5


def test_token_cosine():
    mask = np.array([[1, 1, 0]], bool)
    ref = np.array([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    got = np.array([[[2.0, 0.0], [1.0, 0.0], [-5.0, 5.0]]])  # same direction (1), orthogonal (0), padding
    total, n = score("token_cosine", judged("token_cosine", [got], mask), judged("token_cosine", [ref], mask))
    assert n == 2 and total / n == pytest.approx(0.5)


def test_choice_agreement_and_accuracy():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    ref = judged("choice_agreement", [np.array([[0, 1], [1, 0], [1, 0], [1, 0]])], None)
    assert score("choice_agreement", judged("choice_agreement", [logits], None), ref) == (3.0, 4)
    assert score("accuracy", judged("accuracy", [logits], None), np.array([1, 0, 0, 0])) == (3.0, 4)


def _rows(rng):
    ids = rng.integers(0, 9, (5, 4))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    return {"input_ids": ids, "attention_mask": mask, "where": mask.astype(bool), "lengths": mask.sum(-1)}


def _items(rows, refs):
    return [(feed, where, ref) for (feed, where), ref in zip(batches(rows, 1), refs)]


def test_reference_and_per_item_values_agree_however_batched():
    """Token-level references concatenate row-major, so batch sizes 3 (reference) and 1 (NNCF items) line up."""
    rng = np.random.default_rng(0)
    rows = _rows(rng)
    table = 10 * rng.normal(size=(9, 3))  # decisive: every top-two probability gap is wide

    def run(feed):  # a "model": token label logits looked up from the input id
        return [table[feed["input_ids"]]]

    name, _, refs = references("token-classification", run, rows, size=3)
    assert name == "token_label_agreement"
    flat3, (_, _, refs1) = np.concatenate(refs), references("token-classification", run, rows, size=1)
    assert len(flat3) == rows["where"].sum() and np.array_equal(flat3, np.concatenate(refs1))
    assert agreement(name, run, _items(rows, refs1)) == (1.0, [1.0] * 5)
    flipped = lambda feed: [-table[feed["input_ids"]]]
    value, per_item = agreement(name, flipped, _items(rows, refs1))
    assert value < 1.0 and len(per_item) == 5


def test_near_ties_are_not_counted():
    """As in parity: a reference decision with a top-two probability gap under the int8 tie_margin is UNDECIDED."""
    ref = np.array([0, UNDECIDED, 2])
    assert score("token_label_agreement", np.array([0, 1, 1]), ref) == (1.0, 2)  # the near-tie's flip is free
    logits = np.array([[[4.0, 0.0], [0.01, 0.0], [0.0, 4.0], [0.0, 3.0]]] * 4 + [[[0.0, 0.0]] * 4])
    rows = {"input_ids": np.zeros((5, 4), np.int64), "attention_mask": np.ones((5, 4), np.int64),
            "where": np.ones((5, 4), bool), "lengths": np.full(5, 4)}
    name, description, refs = references("token-classification", lambda feed: [logits[:len(feed["input_ids"])]],
                                         rows, size=5)
    assert name == "token_label_agreement" and "top-two probability gap" in description
    assert (np.concatenate(refs) == UNDECIDED).sum() == 4 * 1 + 4  # the 0.01 gaps and the all-zero row


@pytest.mark.parametrize("task,flat_metric", [("token-classification", "logit_cosine"),
                                              ("question-answering", "row_logit_cosine"),
                                              ("multiple-choice", "row_logit_cosine")])
def test_a_flat_head_is_held_by_its_outputs(task, flat_metric):
    """An untrained head (every decision a near-tie) has no answers to agree on: the cosine of its raw outputs
    is held instead, the same however the rows are batched, and it drops when the outputs drift."""
    rng = np.random.default_rng(2)
    rows = _rows(rng)
    if task == "multiple-choice":
        rows = {**rows, "input_ids": np.stack([rows["input_ids"]] * 2, 1),
                "attention_mask": np.stack([rows["attention_mask"]] * 2, 1)}
    table = 0.01 * rng.normal(size=(9, 3))  # near-uniform outputs

    def run(feed, noise=0.0):
        x = table[feed["input_ids"]] + noise
        if task == "multiple-choice":
            return [(x[..., 0] * feed["attention_mask"]).sum(-1)]  # [batch, 2 choices]; padding ignored
        if task == "question-answering":
            return [x[..., 0], x[..., 1]]  # start, end [batch, seq]
        return [x]

    name, description, refs = references(task, run, rows, size=3)
    assert name == flat_metric and "near-ties" in description
    _, _, refs1 = references(task, run, rows, size=1)
    assert np.allclose(np.concatenate(refs), np.concatenate(refs1))
    value, per_item = agreement(name, run, _items(rows, refs1))
    assert value == pytest.approx(1.0) and len(per_item) == 5
    drifted = lambda feed: run(feed, noise=0.01 * rng.normal(size=feed["input_ids"].shape + (3,)))
    assert agreement(name, drifted, _items(rows, refs1))[0] < 0.99


def test_worker_evaluate_matches(tmp_path):
    """The worker's evaluate() reads the eval .npz the same way: here a one-MatMul ONNX 'token classifier'."""
    pytest.importorskip("onnx")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from quantization.inc_worker import evaluate

    table = np.random.default_rng(1).normal(size=(9, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["logits"]),
         helper.make_node("Identity", ["attention_mask"], ["unused"])], "g",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", 3]),
         helper.make_tensor_value_info("unused", TensorProto.INT64, ["b", "s"])],
        [numpy_helper.from_array(table, "table")])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), model)
    ids = np.array([[1, 2, 3], [4, 5, 0]])
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    ref = table[ids][mask.astype(bool)].argmax(-1)
    ref[0] = (ref[0] + 1) % 3  # 4 of 5 real tokens agree
    np.savez(tmp_path / "eval.npz", input_ids=ids, attention_mask=mask, lengths=mask.sum(-1),
             where=mask.astype(bool), reference=ref, metric=np.array("token_label_agreement"))
    assert evaluate(str(model), tmp_path / "eval.npz", batch=1) == pytest.approx(0.8)
