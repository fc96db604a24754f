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
    import onnx
    import onnxruntime as ort

    from exporters.onnx_export import ExportConfig, export

    full = export(ExportConfig(model="tiny", task=task, out=tmp_path / "full"))
    pruned = export(ExportConfig(model="tiny", task=task, out=tmp_path / "cls", cls_pruning=True))
    assert "cls_pruning" in pruned.recipe and "cls_pruning" not in full.recipe
    feed = _feed(shape, pad_row=1, keep=11)
    run = {name: ort.InferenceSession(str(tmp_path / name / "model.onnx"), providers=["CPUExecutionProvider"])
           .run(["logits"], feed)[0] for name in ("full", "cls")}
    np.testing.assert_allclose(run["cls"], run["full"], rtol=0, atol=1e-5)
    # the last layer's FFN and attention projection see one row: their MatMuls read a [*, 1, dim] tensor
    def lin1_rows(name: str) -> int:  # rows the last layer's FFN sees, by shape inference at the fixed input shape
        model = onnx.load(str(tmp_path / name / "model.onnx"))
        for inp in model.graph.input:
            for d, n in zip(inp.type.tensor_type.shape.dim, shape):
                d.dim_value = n
        graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
        node = next(n for n in graph.node if "layer.1/ffn/lin1/MatMul" in n.name)
        return {v.name: v for v in graph.value_info}[node.input[0]].type.tensor_type.shape.dim[-2].dim_value

    assert (lin1_rows("full"), lin1_rows("cls")) == (shape[-1], 1)


@pytest.mark.parametrize("task", ["token-classification", "question-answering", "feature-extraction", "fill-mask"])
def test_refused_for_heads_that_read_every_token(tmp_path, task):
    from exporters.onnx_export import ExportConfig

    with pytest.raises(ConfigError, match="reads every token"):
        ExportConfig(model="tiny", task=task, out=tmp_path / "x", cls_pruning=True)


def test_saved_flops_match_the_last_layer_rows_skipped():
    from types import SimpleNamespace

    from benchmarks.int8_floor import model_flops
    from exporters.cls_pruning import saved_flops

    cfg = SimpleNamespace(dim=768, hidden_dim=3072, n_layers=6)
    one_layer = model_flops({"dim": 768, "hidden_dim": 3072, "n_layers": 1}, 1, 128)
    saved = saved_flops(cfg, 128)
    # q, out_lin, lin1, lin2 and both attention products of 127 of 128 rows: 13.5% of the 6-layer model
    assert saved == pytest.approx(2 * 127 * (2 * 768 * 768 + 2 * 768 * 3072) + 4 * 127 * 128 * 768)
    assert 0.13 < saved / (6 * one_layer) < 0.14
