"""Exporter: graph I/O, fusions the ORT optimizer finds, validation that fails loudly."""
import pytest

from exporters.onnx_export import ExportConfig, export
from runtimes.errors import ConfigError, ExportError
from runtimes.heads import HEADS, TASKS


@pytest.mark.parametrize("task", TASKS)
def test_graph_io_follows_optimum_names_with_dynamic_axes(tiny_artifacts, task):
    import onnx

    graph = onnx.load(str(tiny_artifacts[task, "onnxruntime"] / "model.onnx")).graph

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    ins = {v.name: dims(v) for v in graph.input}
    outs = {v.name: dims(v) for v in graph.output}
    lead = ["batch", "num_choices"] if task == "multiple-choice" else ["batch"]
    assert ins == {"input_ids": [*lead, "sequence"], "attention_mask": [*lead, "sequence"]}
    assert list(outs) == list(HEADS[task].outputs)
    for name, d in outs.items():
        assert d[0] == "batch"
        if task in ("feature-extraction", "fill-mask", "token-classification", "question-answering"):
            assert d[1] == "sequence"
        if task == "multiple-choice":
            assert d == ["batch", "num_choices"]


def test_tiny_graph_is_fusable(tiny_artifacts):
    for task in TASKS:
        fusions = (__import__("runtimes.artifact", fromlist=["x"]).load_artifact(tiny_artifacts[task, "onnxruntime"])
                   .manifest.recipe["optimizer_fusions"])
        assert fusions["Attention"] == 2 and fusions["SkipLayerNormalization"] == 4, (task, fusions)
        assert fusions["EmbedLayerNormalization"] == 1 and fusions["BiasGelu"] >= 2, (task, fusions)


@pytest.mark.slow
def test_base_size_graph_gets_every_bert_fusion(tmp_path):
    m = export(ExportConfig(model="base-random", task="feature-extraction", out=tmp_path / "base"))
    assert m.recipe["optimizer_fusions"] == {
        "EmbedLayerNormalization": 1, "Attention": 6, "BiasGelu": 6, "SkipLayerNormalization": 12}
    assert max(m.parity["export_validation"]["max_abs_diff"].values()) <= 1e-4


def test_validation_failure_lists_every_output_and_writes_nothing(tmp_path, monkeypatch):
    """Export a perturbed copy of the model: both QA outputs must be named in the error."""
    import torch

    from exporters import onnx_export

    real = onnx_export.export_graph

    def perturbed(model, head, path, opset):
        import copy

        bad = copy.deepcopy(model)
        with torch.no_grad():
            bad.qa_outputs.weight.mul_(1.05)
            bad.qa_outputs.bias.add_(0.05)
        real(bad, head, path, opset)

    monkeypatch.setattr(onnx_export, "export_graph", perturbed)
    out = tmp_path / "qa"
    with pytest.raises(ExportError) as e:
        export(ExportConfig(model="tiny", task="question-answering", out=out))
    msg = str(e.value)
    assert "start_logits at input shape" in msg and "end_logits at input shape" in msg
    assert "Nothing was written" in msg
    assert list(tmp_path.iterdir()) == []


def test_validation_is_on_unseen_padded_shapes(tiny_artifacts):
    from runtimes.artifact import load_artifact

    v = load_artifact(tiny_artifacts["token-classification", "onnxruntime"]).manifest.parity["export_validation"]
    export_shape = load_artifact(tiny_artifacts["token-classification", "onnxruntime"]).manifest.recipe["export_shape"]
    assert len(v["shapes"]) >= 3
    assert [export_shape["batch"], export_shape["sequence"]] not in v["shapes"]
    assert v["passed"] and max(v["max_abs_diff"].values()) <= 1e-4
    feeds = list(__import__("exporters.onnx_export", fromlist=["x"]).validation_feeds(HEADS["token-classification"], 30522))
    assert any((f["attention_mask"] == 0).any() for f in feeds), "validation must include padded rows"


def test_export_config_rejects_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'summarization'"):
        ExportConfig(model="tiny", task="summarization", out=tmp_path)
    with pytest.raises(ConfigError, match="cannot export to backend 'tflite'"):
        ExportConfig(model="tiny", task="fill-mask", out=tmp_path, backend="tflite")
    with pytest.raises(ConfigError, match="opset 9 is out of range"):
        ExportConfig(model="tiny", task="fill-mask", out=tmp_path, opset=9)
