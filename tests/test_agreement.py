"""The int8-accuracy metrics (quantization/agreement.py, implemented in quantization/inc_worker.py) on hand-made
outputs whose answer is known."""
import numpy as np
import pytest

from quantization.agreement import METRICS, agreement, batches, judged, metric, reference, score


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


def test_reference_and_per_item_values_agree_however_batched():
    """Token-level references concatenate row-major, so batch sizes 3 (reference) and 1 (NNCF items) line up."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 9, (5, 4))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    rows = {"input_ids": ids, "attention_mask": mask, "where": mask.astype(bool), "lengths": mask.sum(-1)}
    table = rng.normal(size=(9, 3))

    def run(feed):  # a "model": token label logits looked up from the input id
        return [table[feed["input_ids"]]]

    ref = reference("token-classification", run, rows, size=3)
    assert len(ref) == mask.sum()
    at, items = 0, []
    for feed, where in batches(rows, 1):
        n = int(where.sum())
        items.append((feed, where, ref[at:at + n]))
        at += n
    assert agreement("token-classification", run, items) == (1.0, [1.0] * 5)
    flipped = lambda feed: [-table[feed["input_ids"]]]
    value, per_item = agreement("token-classification", flipped, items)
    assert value < 1.0 and len(per_item) == 5


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
