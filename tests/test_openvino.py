"""OpenVINO: IR export, the runtime (precision actually run, hints) and NNCF INT8 on the tiny model.
Parity of openvino fp32/int8 runs in tests/test_parity.py (its ROWS)."""
import json

import numpy as np
import pytest

from runtimes.base import RuntimeOptions
from runtimes.errors import ArtifactError, ConfigError, QuantizationError
from runtimes.heads import TASKS

from conftest import int8_config, lacks
from test_runtimes import feeds

pytestmark = pytest.mark.openvino


def load(path, **options):
    from runtimes.registry import load_runtime

    return load_runtime(path, RuntimeOptions(**options))


@pytest.mark.parametrize("task", TASKS)
def test_ir_fp32_matches_onnxruntime(tiny_artifacts, tiny_openvino, task):
    path = tiny_openvino(task, "fp32")
    m = json.loads((path / "manifest.json").read_text())
    parent = tiny_artifacts[task, "onnxruntime"]
    assert (m["backend"], m["precision"], m["recipe"]["inference_precision_hint"]) == ("openvino", "fp32", "f32")
    assert m["source"]["parent"] == {"path": str(parent.absolute()),
                                     "sha256": json.loads((parent / "manifest.json").read_text())["files"]["model.onnx"]}
    with load(path) as ov_rt, load(parent) as ort_rt:
        assert ov_rt.describe()["inference_precision"] == "f32"  # what the compiled model reports, not the request
        for feed in feeds(task == "multiple-choice"):
            got, want = ov_rt.infer(feed), ort_rt.infer(feed)
            assert set(got) == set(want)
            for name in want:
                assert got[name].dtype == np.float32 and got[name].shape == want[name].shape
                assert np.max(np.abs(got[name] - want[name])) <= 1e-4, name


@pytest.mark.parametrize("hint", ["f32", "bf16"])
def test_attention_rewrite_keeps_answers_and_makes_the_plugin_transpose_keys_by_head_rows(tiny_artifacts, hint):
    import collections

    import openvino as ov

    from exporters.openvino_attention import explicit_attention

    src = str(tiny_artifacts["text-classification", "onnxruntime"] / "model.onnx")
    as_converted, rewritten = ov.convert_model(src), ov.convert_model(src)
    assert explicit_attention(rewritten) == 2  # one per layer of the tiny model
    assert "ScaledDotProductAttention" not in {op.get_type_name() for op in rewritten.get_ops()}
    batch, seq, head = 2, 24, 16  # seq != head size, so the two key layouts are told apart by shape

    def compiled(model):
        model = model.clone()
        model.reshape({p.get_any_name(): [batch, seq] for p in model.inputs})
        return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})

    def key_transposes(c) -> collections.Counter:  # layouts the plugin transposes into, [B, H, ., .] only
        ops = c.get_runtime_model().get_ops()
        shapes = [op.get_output_partial_shape(0).to_shape() for op in ops
                  if op.get_rt_info()["layerType"].astype(str) == "Transpose"]
        return collections.Counter(tuple(s) for s in shapes if len(s) == 4 and s[1] == 2)

    before, after = compiled(as_converted), compiled(rewritten)
    assert key_transposes(before) == {(batch, 2, head, seq): 2}  # K^T, element by element
    assert key_transposes(after) == {(batch, 2, seq, head): 2}  # whole head rows
    ids = np.random.default_rng(3).integers(999, 30522, (batch, seq))
    mask = np.ones_like(ids)
    ids[1, 9:], mask[1, 9:] = 0, 0  # a padded row: the mask path is rewritten too
    feed = {"input_ids": ids, "attention_mask": mask}
    np.testing.assert_allclose(after(feed)[0], before(feed)[0], rtol=0, atol=1e-5 if hint == "f32" else 2e-2)


def test_ir_records_the_attention_rewrite_and_int8_of_the_ir_carries_it(tiny_openvino, tmp_path):
    from quantization.openvino_int8 import quantize

    ir = tiny_openvino("feature-extraction", "fp32")
    assert json.loads((ir / "manifest.json").read_text())["recipe"]["attention"]["rewritten_blocks"] == 2
    int8 = quantize(int8_config(ir, tmp_path / "int8"))  # nothing left to rewrite: the IR's record is kept
    assert int8.recipe["attention"]["rewritten_blocks"] == 2


def test_throughput_hint_gives_the_same_answers(tiny_openvino):
    path = tiny_openvino("multiple-choice", "fp32")
    with load(path) as lat, load(path, hint="throughput") as thr:
        assert thr.describe()["hint"] == "throughput"
        for feed in feeds(True):
            a, b = lat.infer(feed), thr.infer(feed)
            assert np.max(np.abs(a["logits"] - b["logits"])) <= 1e-5


@pytest.mark.parametrize("hint", ["latency", "throughput"])
def test_static_shapes_give_the_same_answers_with_one_compile_per_shape(tiny_openvino, hint, monkeypatch):
    import runtimes.openvino_backend as backend

    monkeypatch.setattr(backend, "MAX_STATIC_SHAPES", 2)
    path = tiny_openvino("multiple-choice", "fp32")
    with load(path) as dynamic, load(path, static_shapes=True, hint=hint) as static:
        assert static.describe()["static_shapes"] is True
        batches = list(feeds(True))
        for feed in batches + batches[:1]:  # the repeated shape reuses its compiled model
            a, b = dynamic.infer(feed), static.infer(feed)
            assert np.max(np.abs(a["logits"] - b["logits"])) <= 1e-5
        shapes = list(static.compiled_by_shape)
        assert len(shapes) == 2 and all(s is not None for s in shapes)  # LRU bound holds, only static models
        last = tuple(batches[0]["input_ids"].shape for _ in range(2))
        assert last in shapes or hint == "throughput"  # throughput compiles its row chunks' shapes


def test_int8_avx512_bf16_target_runs_unquantized_ops_in_bf16(tiny_artifacts, tmp_path):
    from quantization.config import QuantizeConfig
    from quantization.openvino_int8 import quantize
    from runtimes.errors import ArtifactMismatch

    src = tiny_artifacts["text-classification", "onnxruntime"]
    with pytest.raises(ConfigError, match="does not fit backend openvino"):
        quantize(QuantizeConfig(artifact=src, out=tmp_path / "bad", backend="openvino", method="int8", target="arm64"))
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "int8-bf16"
    m = quantize(QuantizeConfig(artifact=src, out=out, backend="openvino", method="int8", target="avx512-bf16",
                                calibration_size=16))
    assert (m.precision, m.recipe["preset"], m.recipe["inference_precision_hint"]) == ("int8", "avx512-bf16", "bf16")
    if lacks("cpu_bf16"):  # a CPU without bf16 execution refuses it (never a silent f32 run)
        with pytest.raises(ArtifactMismatch, match="this CPU runs it as f32"):
            load(out)
        return
    with load(out) as rt, load(src) as ref:
        assert rt.describe()["inference_precision"] == "bf16"
        feed = next(feeds(False))
        got, want = rt.infer(feed)["logits"], ref.infer(feed)["logits"]
        assert got.shape == want.shape and np.isfinite(got).all()


@pytest.mark.cpu_bf16
def test_bf16_records_bf16(tiny_openvino):
    path = tiny_openvino("text-classification", "bf16")
    assert json.loads((path / "manifest.json").read_text())["recipe"]["inference_precision_hint"] == "bf16"
    with load(path) as rt:
        assert rt.describe()["inference_precision"] == "bf16"
        assert rt.infer(next(feeds(False)))["logits"].dtype == np.float32


def test_precision_mismatch_is_an_error(tiny_openvino, tmp_path):
    import shutil

    from runtimes.artifact import update_manifest
    from runtimes.errors import ArtifactMismatch

    with pytest.raises(ConfigError, match="is fp32; precision 'bf16'"):
        load(tiny_openvino("text-classification", "fp32"), precision="bf16")
    # a hint the CPU may not honour (f16 needs AVX512-FP16; elsewhere it runs as bf16 or f32): a CPU that
    # executes f16 runs it, any other refuses to load it
    path = tmp_path / "ir"
    shutil.copytree(tiny_openvino("text-classification", "fp32"), path)
    update_manifest(path, recipe={"inference_precision_hint": "f16"})
    if lacks("cpu_fp16"):
        with pytest.raises(ArtifactMismatch, match="this CPU runs it as"):
            load(path)
    else:
        with load(path) as rt:
            assert rt.describe()["inference_precision"] == "f16"


def test_a_precision_this_cpu_does_not_execute_is_refused_with_a_fix_that_runs(tiny_artifacts, tmp_path, monkeypatch):
    """What an AVX2-only CPU does with a bf16 hint (runs it as f32), simulated on any CPU: the export is refused,
    the fix names what runs here (fp32, never bf16 again), and nothing is written."""
    import openvino as ov

    from exporters.openvino_export import OpenVinoExportConfig, export_openvino
    from runtimes.errors import ExportError

    real = ov.Core.compile_model

    class RunsAsF32:
        def __init__(self, compiled):
            self._compiled = compiled

        def get_property(self, name):
            return ov.Type.f32 if name == "INFERENCE_PRECISION_HINT" else self._compiled.get_property(name)

        def __getattr__(self, name):
            return getattr(self._compiled, name)

    monkeypatch.setattr(ov.Core, "compile_model", lambda self, *a, **k: RunsAsF32(real(self, *a, **k)))
    out = tmp_path / "bf16"
    with pytest.raises(ExportError) as e:
        export_openvino(OpenVinoExportConfig(src=tiny_artifacts["text-classification", "onnxruntime"], out=out,
                                             precision="bf16"))
    msg = str(e.value)
    assert "runs an bf16 hint as f32" in msg and "Fix: --precision fp32 here" in msg, msg
    assert "fp32 or bf16" not in msg and "Nothing was written" in msg
    assert not out.exists() and not list(tmp_path.glob(".*bf16*"))


def test_int8_runs(tiny_openvino):
    path = tiny_openvino("text-classification", "int8")
    m = json.loads((path / "manifest.json").read_text())
    assert (m["backend"], m["precision"], m["recipe"]["quantizer"]) == ("openvino", "int8", "nncf")
    assert m["recipe"]["calibration"]["size"] == 32 and "train split" in m["recipe"]["calibration"]["set"]
    assert b"FakeQuantize" in (path / "model.xml").read_bytes()
    assert m["recipe"]["attention"]["rewritten_blocks"] == 2 and b"ScaledDotProductAttention" not in (
        path / "model.xml").read_bytes()  # NNCF quantized the rewritten form
    with load(path) as rt:
        assert rt.describe()["inference_precision"] == "f32"  # non-quantized ops stay f32, not the bf16 default
        out = rt.infer(next(feeds(False)))["logits"]
        assert out.dtype == np.float32 and np.isfinite(out).all()


def _lin2_inputs(path):
    import openvino as ov

    model = ov.Core().read_model(str(path / "model.xml"))
    return [{inp.get_source_output().get_node().get_type_name() for inp in op.inputs()}
            for op in model.get_ops() if op.get_type_name() == "MatMul" and "ffn/lin2" in op.get_friendly_name()]


def test_int8_keeps_outlier_layers_fp32_without_a_labelled_check(tiny_openvino):
    """lin2 (FFN output, fed by GELU outliers) stays fp32 on tasks judged without labels; the classifier's is INT8."""
    fe, tc = tiny_openvino("feature-extraction", "int8"), tiny_openvino("text-classification", "int8")
    assert json.loads((fe / "manifest.json").read_text())["recipe"]["fp32_outlier_layers"] == [".*ffn/lin2.*"]
    assert json.loads((tc / "manifest.json").read_text())["recipe"]["fp32_outlier_layers"] == []
    fe_inputs, tc_inputs = _lin2_inputs(fe), _lin2_inputs(tc)
    assert fe_inputs and tc_inputs  # the tiny model has lin2 MatMuls in both
    assert not any("FakeQuantize" in kinds for kinds in fe_inputs)
    assert all("FakeQuantize" in kinds for kinds in tc_inputs)


def test_bad_inputs_leave_nothing(tiny_artifacts, tiny_openvino, tmp_path):
    from exporters.openvino_export import OpenVinoExportConfig, export_openvino
    from quantization.openvino_int8 import quantize

    src = tiny_artifacts["text-classification", "onnxruntime"]
    with pytest.raises(ConfigError, match="unknown OpenVINO precision"):
        OpenVinoExportConfig(src=src, out=tmp_path / "x", precision="int4")
    with pytest.raises(ArtifactError, match="built from the plain onnxruntime fp32 export"):  # torch source
        export_openvino(OpenVinoExportConfig(src=tiny_artifacts["text-classification", "torch"], out=tmp_path / "a"))
    with pytest.raises(QuantizationError, match="already INT8"):
        quantize(int8_config(tiny_openvino("text-classification", "int8"), tmp_path / "b"))
    with pytest.raises(QuantizationError, match="at least"):
        quantize(int8_config(src, tmp_path / "c", calibration_size=0))
    with pytest.raises(QuantizationError, match="at least"):  # int8-accuracy, now on every task, checks too
        quantize(int8_config(tiny_artifacts["fill-mask", "onnxruntime"], tmp_path / "d", method="int8-accuracy",
                             calibration_size=3))
    assert not list(tmp_path.iterdir())  # no partial or staging directories


@pytest.mark.search
@pytest.mark.parametrize("task,name", [("token-classification", "logit_cosine"), ("fill-mask", "logit_cosine"),
                                       ("text-classification", "accuracy")])
def test_int8_accuracy_control_records_its_metric(tiny_artifacts, tmp_path, task, name):
    """Unlabelled heads: NNCF holds their metric against the fp32 parent (OpenVINO f32) within max_drop; the tiny
    model's heads are untrained (every answer a near-tie), so that is the cosine of their outputs
    (quantization/agreement.references). text-classification keeps accuracy on gold labels."""
    from quantization.openvino_int8 import quantize

    out, drop = tmp_path / "acc", 0.05  # the tiny model's random heads are near-flat: argmaxes flip easily
    quantize(int8_config(tiny_artifacts[task, "onnxruntime"], out, method="int8-accuracy", calibration_size=16,
                         max_accuracy_drop=drop))
    acc = json.loads((out / "manifest.json").read_text())["recipe"]["accuracy_control"]
    assert acc["metric"] == name and acc["max_drop"] == drop and acc["drop_type"] == "absolute"
    # 2000 labelled rows for accuracy; 100 rows for agreement (each judges many tokens)
    assert ("split()[0][8000:10000]" if task == "text-classification" else "split()[0][8000:8100]") in acc["validation"]
    if task != "text-classification":
        assert "fp32 parent" in acc["metric_description"] and "INFERENCE_PRECISION_HINT f32" in acc["reference"]
        assert "near-ties" in acc["metric_description"]
        assert acc["fp32"] == pytest.approx(1.0)  # the fp32 model agrees with itself
    assert 0.0 <= acc["int8"] <= 1.0 and acc["int8"] >= acc["fp32"] - drop
    assert set(acc["reverted_to_fp32"]) <= set(acc["fp32_matmuls"])
    # what is saved is what was checked: the int8-weight form first, NNCF's validated form only when it alone holds
    storage = json.loads((out / "manifest.json").read_text())["recipe"]["weight_storage"]
    assert storage["saved"] in storage["checked"] and "int8 weights" in storage["checked"]
    assert storage["checked"][storage["saved"]] == acc["int8"]
    assert any("lin2" in n for n in acc["fp32_matmuls"]) == (task != "text-classification")  # outlier scope kept
    with load(out) as rt:
        assert all(np.isfinite(v).all() for v in rt.infer(next(feeds(False))).values())


def test_weight_storage_saves_what_was_checked():
    """int8 weights when they hold the bound; NNCF's validated FakeQuantize form only when it alone holds."""
    from quantization.openvino_int8 import _weight_storage

    value = {"validated": 0.995, "compressed": 0.98}.get
    assert _weight_storage("validated", "compressed", value, 0.97)[:2] == ("compressed", "int8 weights")
    model, storage, values = _weight_storage("validated", "compressed", value, 0.99)
    assert (model, storage) == ("validated", "fake-quantized fp32 weights")
    assert values == {"int8 weights": 0.98, "fake-quantized fp32 weights": 0.995}
    model, storage, values = _weight_storage("validated", "compressed", value, 0.999)  # neither: caller refuses
    assert (model, storage, values[storage]) == ("compressed", "int8 weights", 0.98)


def test_export_openvino_cli(tiny_artifacts, tmp_path, capsys):
    from distilbert_deploy.cli import main

    src = tiny_artifacts["fill-mask", "onnxruntime"]
    assert main(["export-openvino", str(src), "--out", str(tmp_path / "ov"), "--precision", "fp32"]) == 0
    assert "INFERENCE_PRECISION_HINT=f32" in capsys.readouterr().out
    assert main(["export-openvino", str(tmp_path / "missing"), "--out", str(tmp_path / "ov2")]) == 2
    assert not (tmp_path / "ov2").exists()


def test_imports_stay_light():
    import subprocess
    import sys

    code = ("import sys, runtimes, runtimes.registry, runtimes.openvino_backend, exporters.openvino_export, "
            "quantization.openvino_int8; bad = [m for m in ('openvino', 'nncf', 'torch') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_quantize_defaults_to_int8_and_the_auto_target(tiny_artifacts, tmp_path, capsys):
    """`quantize --backend openvino` with no method or target: int8 with the preset the CPU's flags call for (a
    synthetic AVX2-only CPU: cpu-f32 on every machine), and the manifest says what was picked and why."""
    import json

    from conftest import AVX2_ONLY, auto_target_sees
    from distilbert_deploy.cli import main

    out = tmp_path / "ov"
    with auto_target_sees(*AVX2_ONLY):
        assert main(["quantize", str(tiny_artifacts["text-classification", "onnxruntime"]), "--out", str(out),
                     "--backend", "openvino", "--calibration-size", "8"]) == 0
    printed = capsys.readouterr().out
    recipe = json.loads((out / "manifest.json").read_text())["recipe"]
    want = "cpu-f32"
    assert recipe["target"]["cpu"] == "synthetic test CPU"
    assert recipe["method"] == "int8" and recipe["preset"] == want
    assert recipe["target"]["requested"] == "auto" and recipe["target"]["picked"] == want and recipe["target"]["why"]
    assert f"--target auto picked {want}: {recipe['target']['why']}" in printed
