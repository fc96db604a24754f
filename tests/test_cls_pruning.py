"""[CLS] pruning of the last layer: same answers as the full graph, fewer FLOPs, refused where a head reads every token."""
from __future__ import annotations

import numpy as np
import pytest

from runtimes.errors import ConfigError


def _feed(shape, pad_row: int, keep: int):
    rng = np.random.default_rng(1)
    ids = rng.integers(1000, 2000, shape).astype(np.int64)
    mask = np.ones_like(ids)
    ids[pad_row, ..., keep:], mask[pad_row, ..., keep:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("task,shape", [("text-classification", (3, 40)), ("multiple-choice", (2, 3, 40))])
def test_pruned_export_gives_the_full_graphs_answers(tmp_path, task, shape):
    import onnxruntime as ort

    from exporters.onnx_export import ExportConfig, export

    full = export(ExportConfig(model="tiny", task=task, out=tmp_path / "full"))
    pruned = export(ExportConfig(model="tiny", task=task, out=tmp_path / "cls", cls_pruning=True))
    assert "cls_pruning" in pruned.recipe and "cls_pruning" not in full.recipe
    feed = _feed(shape, pad_row=1, keep=11)
    run = {name: ort.InferenceSession(str(tmp_path / name / "model.onnx"), providers=["CPUExecutionProvider"])
           .run(["logits"], feed)[0] for name in ("full", "cls")}
    np.testing.assert_allclose(run["cls"], run["full"], rtol=0, atol=1e-5)
    # every product of the last layer (projections, attention, FFN) computes the [CLS] row or one row per head (the
    # tiny model has 2), never a row per token: no K/V projection of the tokens
    assert _last_layer_matmul_rows(tmp_path / "full" / "model.onnx", feed) == {shape[-1]}
    assert _last_layer_matmul_rows(tmp_path / "cls" / "model.onnx", feed) == {1, 2}


def _last_layer_matmul_rows(path, feed) -> set[int]:
    """Rows (second-to-last dim) of every MatMul output in the tiny model's last layer, as ONNX Runtime computes them."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    outs = [n.output[0] for n in model.graph.node if n.op_type == "MatMul" and "/layer.1/" in n.name]
    assert len(outs) >= 6, "the last layer's products were not found"
    model.graph.output.extend(onnx.ValueInfoProto(name=o) for o in outs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return {r.shape[-2] for r in session.run(outs, feed)}


@pytest.mark.parametrize("task", ["token-classification", "question-answering", "feature-extraction", "fill-mask"])
def test_refused_for_heads_that_read_every_token(tmp_path, task):
    from exporters.onnx_export import ExportConfig

    with pytest.raises(ConfigError, match="reads every token"):
        ExportConfig(model="tiny", task=task, out=tmp_path / "x", cls_pruning=True)


def test_saved_flops_match_the_last_layer_rows_skipped():
    from types import SimpleNamespace

    from benchmarks.int8_floor import model_flops
    from exporters.cls_pruning import saved_flops

    cfg = SimpleNamespace(dim=768, hidden_dim=3072, n_layers=6, n_heads=12)
    one_layer = model_flops({"dim": 768, "hidden_dim": 3072, "n_layers": 1}, 1, 128)
    saved = saved_flops(cfg, 128)
    # what the pruned layer still runs: q and out_lin on one row, the two 12-row head GEMMs (q.Wk, p.X.Wv), the FFN on
    # one row, and 12 full-width rows against the 128 tokens twice (q.X^T, p.X): the rest is 16.3% of the 6-layer model
    kept = 2 * (2 * 768 * 768 + 2 * 12 * 768 * 768 + 2 * 768 * 3072 + 2 * 12 * 128 * 768)
    assert saved == pytest.approx(one_layer - kept)
    assert 0.16 < saved / (6 * one_layer) < 0.17
