"""Intel Neural Compressor (quantization/inc.py + the .venv-inc worker) on the tiny artifacts: real INT8 QDQ
artifacts that the ORT runtime loads, head kept fp32, outputs close to fp32, the tuning recorded in the manifest;
bad inputs raise the right error and leave nothing behind. Tests that run the worker are marked `inc` (they skip
with "needs .venv-inc (make venv-inc)" without it); the refusal paths run everywhere."""
import json
import sys

import pytest

from runtimes.errors import BackendUnavailable, ConfigError, QuantizationError

HEADS = ("classifier", "qa_outputs", "vocab_")
BUILDS = (("text-classification", "int8"), ("feature-extraction", "int8"), ("text-classification", "int8-accuracy"),
          ("question-answering", "int8-accuracy"))


def quantize(src, out, **kw):
    from quantization.api import quantize
    from quantization.config import QuantizeConfig

    return quantize(QuantizeConfig(artifact=src, out=out, backend="inc", **{"calibration_size": 16, "method": "int8",
                                                                             **kw}))


@pytest.fixture(scope="module")
def built(tiny_artifacts, tmp_path_factory):
    """(task, method) -> INC artifact path, each built once from the tiny onnxruntime fp32 artifact."""
    root = tmp_path_factory.mktemp("inc")
    out = {}
    for task, method in BUILDS:
        out[task, method] = root / f"{task}-{method}"
        quantize(tiny_artifacts[task, "onnxruntime"], out[task, method], method=method)
    return out


def _assert_nothing_left(tmp_path):
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


def _feed(artifact, n=24):
    """Real held-out tweets, padded batch (the ORT runtime's own input contract)."""
    import numpy as np

    from sources.tweets import split
    from runtimes.tasks import load_tokenizer

    enc = load_tokenizer(artifact)([t.text for t in split()[1][:n]], padding=True, truncation=True, max_length=128,
                                   return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}


@pytest.mark.inc
@pytest.mark.parametrize("task,method", BUILDS)
def test_int8_graph_and_manifest(built, tiny_artifacts, task, method):
    import onnx

    from runtimes.artifact import load_artifact

    art, parent = load_artifact(built[task, method]), load_artifact(tiny_artifacts[task, "onnxruntime"])
    m = art.manifest
    assert (m.backend, m.precision, m.task, m.model_file) == ("onnxruntime", "int8", task, "model.onnx")
    assert m.source["parent"]["sha256"] == parent.manifest.files["model.onnx"]
    assert m.source["sha256"] == parent.manifest.source["sha256"]  # parity finds the same PyTorch reference
    r = m.recipe
    assert r["quantizer"] == "onnx-neural-compressor" and r["quantizer_version"] == m.versions["onnx-neural-compressor"]
    assert r["method"] == method and r["backend"] == "inc" and r["cpu_check"]["ok"]
    assert r["calibration"]["size"] == 16 and "train split" in r["calibration"]["source"]
    assert r["inc_env"]["numpy"].startswith("1.")  # the worker ran in .venv-inc, not in this numpy-2 venv

    graph = onnx.load(str(art.model_path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    assert r["quant_ops"] == {k: ops.count(k) for k in r["quant_ops"]}  # the manifest reports the real graph
    inits = {i.name: i for i in graph.initializer}
    dq_out = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    weight_matmuls = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and
                      (n.input[1] in inits or n.input[1] in dq_out)]
    head = [n for n in weight_matmuls if any(h in n.name for h in HEADS)]
    encoder = [n for n in weight_matmuls if n not in head]
    # the task head reads fp32 weights and activations; the encoder's weights are INT8 initializers behind a DQ
    assert all(x not in dq_out for n in head for x in n.input[:2]) and sorted(r["head_nodes_fp32"]) == sorted(
        n.name for n in head)
    assert set(r["head_nodes_fp32"]) <= set(r["fp32_nodes"])
    int8 = [n for n in encoder
            if n.input[1] in dq_out and inits[dq_out[n.input[1]].input[0]].data_type == onnx.TensorProto.INT8]
    # int8 (no accuracy search) keeps the FFN output projections fp32 on heads without labels (GELU outliers)
    lin2 = sorted(n.name for n in encoder if "ffn/lin2" in n.name)
    outliers = sorted(r["fp32_outlier_nodes"])
    assert outliers == (lin2 if method == "int8" and task != "text-classification" else [])
    assert len(lin2) == 2 and not set(outliers) & {n.name for n in int8}
    assert len(int8) == r["int8_nodes"] > 0 and (method == "int8-accuracy" or len(int8) == len(encoder) - len(outliers))
    # int8 always quantizes weights per output channel: one scale per column of each weight matrix
    scales = [inits[dq_out[n.input[1]].input[1]].dims for n in int8]
    assert r["per_channel"] is (method == "int8" or r["tuning"]["chosen_trial"]["per_channel"])
    assert all(list(d) == ([inits[dq_out[n.input[1]].input[0]].dims[-1]] if r["per_channel"] else [])
               for n, d in zip(int8, scales)), scales[:3]
    assert (task != "feature-extraction") == bool(head)
    if method == "int8":  # the fixed recipe is checked against the bound; a miss would have run the tuning instead
        b = r["bound_check"]
        assert b["max_drop"] == 0.01 and b["eval_rows"] > 0 and "reason" not in b
        assert b["value"] >= b["fp32_value"] - 0.01


@pytest.mark.inc
@pytest.mark.parametrize("task", ["text-classification", "feature-extraction"])
def test_outputs_close_to_fp32(built, tiny_artifacts, task):
    """Bound: per-tensor 8-bit activations and weights add relative noise of ~1/(255*sqrt(12)) x range/rms ~ 1e-3
    to each quantized MatMul; the residual stream carries fp32 embeddings and LayerNorm re-scales, so the whole
    output moves by well under 1e-2 (measured ~2e-4 on the tiny model). 1e-2 leaves that head-room and still
    fails a wrong scale or zero point (which moves outputs by O(1)). Above 0: the graph really is quantized."""
    import numpy as np

    from runtimes.registry import load_runtime

    src = tiny_artifacts[task, "onnxruntime"]
    feed = _feed(src)
    with load_runtime(src) as ref_rt, load_runtime(built[task, "int8"]) as rt:
        assert rt.describe()["backend"] == "onnxruntime"
        ref, got = ref_rt.infer(feed), rt.infer(feed)
    for name, r in ref.items():
        keep = feed["attention_mask"].astype(bool) if r.ndim == 3 else slice(None)  # real tokens only
        r, g = r[keep], got[name][keep]
        rel = float(np.linalg.norm(g - r) / np.linalg.norm(r))
        assert 1e-7 < rel < 1e-2, (name, rel)
        if task == "text-classification":
            assert (g.argmax(-1) == r.argmax(-1)).all()


@pytest.mark.inc
def test_accuracy_tuning_recorded(built):
    from runtimes.artifact import load_artifact

    t = load_artifact(built["text-classification", "int8-accuracy"]).manifest.recipe["tuning"]
    assert t["tolerable_loss_absolute"] == 0.01 and t["trials"]
    assert (t["metric"], t["metric_description"]) == ("accuracy", "accuracy vs gold labels")
    assert t["tolerable_loss_relative"] == pytest.approx(0.01 / t["fp32_value"], rel=1e-3)
    chosen = t["chosen_trial"]
    assert chosen == t["trials"][-1] and chosen["value"] >= t["fp32_value"] - 0.01
    assert len(t["ranking"]) == 12  # the tiny model's 2 layers x 6 weight MatMuls, ranked by sensitivity
    assert [s for _, s in t["ranking"]] == sorted((s for _, s in t["ranking"]), reverse=True)
    # labelled TRAIN tweets the head never saw (from 8000 on), never the held-out ones parity scores on
    assert "split()[0][8000:10000]" in t["eval_set"] and t["eval_rows"] == 2000


@pytest.mark.inc
def test_parity(built):
    from benchmarks.parity import ParityConfig, run_parity

    report = run_parity(ParityConfig(artifacts=(built["feature-extraction", "int8"],), write_manifest=False))
    (t,) = report.targets
    assert report, f"{t.id} fails parity: {[f.detail for f in t.failures[:5]]}; reproduce: {t.repro}"
    assert t.precision == "int8" and t.cases >= 10


@pytest.mark.inc
def test_already_int8_is_refused(built, tmp_path):
    with pytest.raises(QuantizationError, match="already INT8"):
        quantize(built["text-classification", "int8"], tmp_path / "again")
    _assert_nothing_left(tmp_path)


@pytest.mark.inc
def test_cli(tiny_artifacts, tmp_path, capsys):
    from distilbert_deploy.cli import main

    out = tmp_path / "cli"
    assert main(["quantize", str(tiny_artifacts["question-answering", "onnxruntime"]), "--out", str(out),
                 "--backend", "inc", "--method", "int8", "--calibration-size", "8"]) == 0
    assert "int8" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["recipe"]["head_nodes_fp32"]  # qa_outputs


def test_missing_venv(tiny_artifacts, tmp_path, monkeypatch):
    import quantization.inc as inc

    monkeypatch.setattr(inc, "VENV", tmp_path / "no-venv")
    with pytest.raises(BackendUnavailable, match=r"backend 'inc' is unavailable.*Fix: make venv-inc") as e:
        quantize(tiny_artifacts["text-classification", "onnxruntime"], tmp_path / "out")
    assert e.value.missing == ["onnx_neural_compressor"] and e.value.hint.startswith("make venv-inc")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_venv_without_inc(tiny_artifacts, tmp_path, monkeypatch):
    """A venv whose python cannot import onnx_neural_compressor (this one) is just as unavailable."""
    import quantization.inc as inc

    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setattr(inc, "VENV", tmp_path / "venv")
    with pytest.raises(BackendUnavailable, match="cannot import it"):
        quantize(tiny_artifacts["text-classification", "onnxruntime"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [0, 7])
def test_too_small_calibration(tiny_artifacts, tmp_path, size):
    with pytest.raises(QuantizationError, match="at least 8.*Fix: "):
        quantize(tiny_artifacts["text-classification", "onnxruntime"], tmp_path / "out", calibration_size=size)
    _assert_nothing_left(tmp_path)


@pytest.mark.inc
def test_accuracy_tuning_without_labels_controls_agreement_with_fp32(built):
    """question-answering has no gold labels: the tuning holds the head against the fp32 parent. The tiny model's
    QA head is untrained (every start/end a near-tie), so that is the cosine of its start/end logits."""
    from runtimes.artifact import load_artifact

    t = load_artifact(built["question-answering", "int8-accuracy"]).manifest.recipe["tuning"]
    assert t["metric"] == "row_logit_cosine" and "fp32 parent" in t["metric_description"]
    assert "near-ties" in t["metric_description"]
    assert t["fp32_value"] == pytest.approx(1.0, abs=1e-4)  # the fp32 graph against the parent's own outputs
    assert "ONNX Runtime" in t["reference"] and "split()[0][8000:8100]" in t["eval_set"] and t["eval_rows"] == 100
    chosen = t["chosen_trial"]
    assert chosen == t["trials"][-1] and chosen["value"] >= t["fp32_value"] - 0.01


@pytest.mark.inc
def test_accuracy_tuning_multiple_choice_runs(tiny_artifacts, tmp_path):
    """multiple-choice rows are [2, seq] prompts (tweets i and i+1), the worker batches them like that."""
    from runtimes.artifact import load_artifact

    quantize(tiny_artifacts["multiple-choice", "onnxruntime"], tmp_path / "mc", method="int8-accuracy")
    t = load_artifact(tmp_path / "mc").manifest.recipe["tuning"]
    assert t["metric"] == "row_logit_cosine" and t["fp32_value"] == pytest.approx(1.0, abs=1e-4)  # flat tiny head
    assert t["chosen_trial"]["value"] >= 0.99 and "2 choices" in t["eval_set"]


def test_torch_parent_is_refused(tiny_artifacts, tmp_path):
    with pytest.raises(ConfigError, match="torch artifact"):
        quantize(tiny_artifacts["text-classification", "torch"], tmp_path / "out")
    _assert_nothing_left(tmp_path)


@pytest.mark.inc
def test_worker_failure_writes_nothing(tiny_artifacts, tmp_path, monkeypatch):
    """A worker that dies (here: a script that exits 3 after one progress line) is a QuantizationError naming the
    status and its last output, and the --out directory is never created."""
    import quantization.inc as inc

    (tmp_path / "w").mkdir()
    crash = tmp_path / "w" / "crash.py"
    crash.write_text("import sys\nprint('[inc] about to fail', flush=True)\nsys.exit(3)\n")
    monkeypatch.setattr(inc, "WORKER", crash)
    with pytest.raises(QuantizationError, match=r"exited with status 3.*about to fail.*Nothing was written"):
        quantize(tiny_artifacts["text-classification", "onnxruntime"], tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["w"]


@pytest.mark.inc
def test_inc_has_no_target_presets(built, tiny_artifacts, tmp_path, capsys):
    """The manifest says no preset was picked; naming one is an error before any work (nothing written)."""
    from distilbert_deploy.cli import main
    from runtimes.artifact import load_artifact

    m = load_artifact(next(iter(built.values()))).manifest
    assert m.recipe["target"] == {"requested": "auto", "picked": None,
                                  "why": "Intel Neural Compressor has no target presets"}
    code = main(["quantize", str(tiny_artifacts["text-classification", "onnxruntime"]), "--out", str(tmp_path / "x"),
                 "--backend", "inc", "--target", "avx512-vnni"])
    assert code == 2 and "inc has no target presets" in capsys.readouterr().err and not (tmp_path / "x").exists()
