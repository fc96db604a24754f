"""quantization/ on the tiny artifacts: every ONNX Runtime recipe writes a loadable artifact with the right
manifest; INT8 and optimized artifacts pass parity; bad inputs raise the right error and leave nothing behind."""
import json

import pytest

from conftest import AVX2_ONLY, auto_target_sees, require_backend
from runtimes.errors import BackendUnavailable, ConfigError, QuantizationError

TASK = "question-answering"  # tiny QA parity runs in seconds (text-classification scores 300 tweets)
PRECISION = {"optimize": "fp32", "fp16": "fp16", "dynamic": "int8", "static": "int8"}


@pytest.fixture(scope="module")
def src(tiny_artifacts):
    require_backend("onnxruntime")
    return tiny_artifacts[TASK, "onnxruntime"]


def quantize(src, out, **kw):
    from quantization.api import quantize
    from quantization.config import QuantizeConfig

    return quantize(QuantizeConfig(artifact=src, out=out, **{"calibration_size": 16, **kw}))


@pytest.fixture(scope="module")
def built(src, tmp_path_factory):
    """(method, target) -> artifact path, each built once."""
    root = tmp_path_factory.mktemp("quantized")
    out = {}
    with auto_target_sees(*AVX2_ONLY):  # --target auto picks for an AVX2-only CPU on every machine
        for method, target in (("optimize", None), ("fp16", None), ("dynamic", None), ("static", None),
                               ("static", "tensorrt"), ("static", "arm64"), ("dynamic", "arm64")):
            path = root / f"{method}-{target}"
            quantize(src, path, method=method, target=target)
            out[method, target] = path
    return out


@pytest.mark.parametrize("method,target", [("optimize", None), ("fp16", None), ("dynamic", None), ("static", None),
                                           ("static", "tensorrt"), ("static", "arm64"), ("dynamic", "arm64")])
def test_manifest_and_loadable(built, src, method, target):
    import numpy as np

    from runtimes.artifact import load_artifact
    from runtimes.registry import load_runtime

    art = load_artifact(built[method, target])
    m, parent = art.manifest, load_artifact(src).manifest
    assert (m.backend, m.precision, m.task) == ("onnxruntime", PRECISION[method], TASK)
    assert m.source["sha256"] == parent.source["sha256"]
    assert m.source["parent"]["sha256"] == parent.files["model.onnx"] and m.source["parent"]["path"] == str(src)
    assert m.recipe["method"] == method
    if target:
        assert m.recipe["preset"] == target and m.recipe["target"]["requested"] == target
    else:  # --target auto, as picked for the synthetic AVX2-only CPU, recorded with why
        assert m.recipe["preset"] == ("cuda" if method == "fp16" else "avx2")
        assert m.recipe["target"]["cpu"] == "synthetic test CPU"
        assert m.recipe["target"]["requested"] == "auto" and m.recipe["target"]["picked"] == m.recipe["preset"]
        assert m.recipe["target"]["why"]
    assert m.recipe["cpu_check"]["ok"] and {"onnxruntime", "onnx"} <= set(m.versions)
    assert {"tokenizer.json", "config.json", "model.onnx"} <= set(m.files)
    if method in ("optimize", "fp16"):
        assert {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization"} <= set(m.recipe["fusions"])
        assert m.recipe["opt_level"] == 1
    if method == "static":
        assert m.recipe["calibration"]["size"] == 16 and m.recipe["calibration"]["method"] == "minmax"
        assert "train split" in m.recipe["calibration"]["source"]
    if target == "tensorrt":
        assert m.recipe["activation_symmetric"] and m.recipe["weight_symmetric"] and m.recipe["per_channel"]
    with load_runtime(art.path) as rt:
        ids = np.array([[101, 2023, 2003, 102]], dtype=np.int64)
        out = rt.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert out["start_logits"].shape == (1, 4) and np.isfinite(out["start_logits"]).all()


@pytest.mark.parametrize("method", ["static", "dynamic"])
def test_edge_bundle(built, src, method):
    """Beside model.ort: the minimal-build operator config of exactly this model, the tokenizer, and a README with
    the ORT version, the input contract, the labels and the size; all checksummed in the manifest."""
    import onnx

    art = built[method, "arm64"]
    m = json.loads((art / "manifest.json").read_text())
    assert {"model.ort", "required_operators_and_types.config", "README.md", "tokenizer.json",
            "tokenizer_config.json"} <= set(m["files"])
    assert m["recipe"]["ort_format"]["minimal_build_config"] == "required_operators_and_types.config"
    config = (art / "required_operators_and_types.config").read_text()
    domains = [line.split(";")[0] for line in config.splitlines() if line and not line.startswith("#")]
    assert "ai.onnx" in domains, config
    ops_in_graph = {n.op_type for n in onnx.load(str(art / "model.onnx")).graph.node}
    quantized = {"static": "DequantizeLinear", "dynamic": "MatMulInteger"}[method]
    assert quantized in ops_in_graph and quantized in config and "Gather" in config
    readme = (art / "README.md").read_text()
    assert f"ONNX Runtime **{m['versions']['onnxruntime']}**" in readme
    assert "| `input_ids` | int64 |" in readme and "| `attention_mask` | int64 |" in readme
    assert "No `token_type_ids`" in readme and "--include_ops_by_config required_operators_and_types.config" in readme
    sizes = m["recipe"]["size_bytes"]
    assert f"| `model.ort` (ships) | {sizes['ort'] / 1e6:.1f} MB |" in readme
    assert f"| fp32 parent `model.onnx` | {sizes['parent_onnx'] / 1e6:.1f} MB |" in readme
    kept = m["recipe"]["accuracy_control"]["kept_fp32"]
    assert f"{len(kept)} of {m['recipe']['accuracy_control']['quantizable_nodes']} encoder MatMuls" in readme
    assert m["recipe"]["word_embeddings"]["int8"] and "Word embeddings: INT8" in readme


def test_inspect_shows_size_and_fp32_nodes(built):
    import os
    import subprocess
    import sys

    art = built["static", "arm64"]
    r = subprocess.run([sys.executable, "-m", "distilbert_deploy.cli", "inspect", str(art)], capture_output=True,
                       text=True, env={**os.environ, "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    sizes = json.loads((art / "manifest.json").read_text())["recipe"]["size_bytes"]
    assert f"model.ort {sizes['ort'] / 1e6:.1f} MB vs fp32 parent {sizes['parent_onnx'] / 1e6:.1f} MB" in r.stdout
    assert "fp32 nodes" in r.stdout and "task head" in r.stdout and "accuracy control" in r.stdout


def test_ort_format_for_arm64(built):
    m = json.loads((built["static", "arm64"] / "manifest.json").read_text())
    sizes = m["recipe"]["size_bytes"]
    assert (built["static", "arm64"] / "model.ort").stat().st_size == sizes["ort"] > 0
    assert "model.ort" in m["files"] and sizes["parent_onnx"] > 0
    assert m["recipe"]["activation_type"] == m["recipe"]["weight_type"] == "QInt8"
    # the edge preset stores the word-embedding table in INT8 (it is half of a small model on disk)
    import onnx

    emb = m["recipe"]["word_embeddings"]
    assert emb["int8"] and emb["nodes"] == ["/distilbert/embeddings/word_embeddings/Gather"]
    graph = onnx.load(str(built["static", "arm64"] / "model.onnx")).graph
    table = next(i for i in graph.initializer if "word_embeddings" in i.name and len(i.dims) == 2)
    assert table.data_type == onnx.TensorProto.INT8 and list(table.dims) == [30522, 32]
    # the .ort is the artifact's model (what an edge build ships): the runtime runs it, with the ONNX graph's answers
    assert m["model_file"] == "model.ort"
    import numpy as np
    import onnxruntime as ort

    from runtimes.registry import load_runtime

    ids = np.array([[101, 2023, 2003, 1037, 3231, 102]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    onnx_out = ort.InferenceSession(str(built["static", "arm64"] / "model.onnx"),
                                    providers=["CPUExecutionProvider"]).run(["start_logits"], feed)[0]
    with load_runtime(built["static", "arm64"]) as rt:
        assert rt.artifact.model_path.name == "model.ort"
        np.testing.assert_allclose(rt.infer(feed)["start_logits"], onnx_out, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method,target", [("optimize", None), ("dynamic", None), ("static", None),
                                           ("static", "tensorrt")])
def test_parity(built, method, target):
    from benchmarks.parity import ParityConfig, run_parity

    report = run_parity(ParityConfig(artifacts=(built[method, target],), write_manifest=False))
    (t,) = report.targets
    assert report, f"{t.id} fails parity: {[f.detail for f in t.failures[:5]]}; reproduce: {t.repro}"
    assert t.precision == PRECISION[method] and t.cases >= 10


def test_entropy_and_percentile_calibration(src, tmp_path):
    for how in ("entropy", "percentile"):
        m = quantize(src, tmp_path / how, method="static", calibrate_method=how, per_channel=True)
        assert m.recipe["calibration"]["method"] == how and m.recipe["per_channel"] is True


def _assert_nothing_left(tmp_path):
    assert not any(p.name != "src" for p in tmp_path.iterdir()), list(tmp_path.iterdir())


def test_already_int8_is_refused(built, tmp_path):
    with pytest.raises(QuantizationError, match="already INT8"):
        quantize(built["dynamic", None], tmp_path / "again", method="static")
    _assert_nothing_left(tmp_path)


@pytest.mark.parametrize("size", [0, 7])
def test_too_small_calibration(src, tmp_path, size):
    with pytest.raises(QuantizationError, match="at least 8.*Fix: "):
        quantize(src, tmp_path / "out", method="static", calibration_size=size)
    _assert_nothing_left(tmp_path)


def test_empty_calibration_texts(src, tmp_path):
    from quantization.config import QuantizeConfig
    from quantization.ort_quant import quantize as ort_quantize

    with pytest.raises(QuantizationError, match="0 non-empty"):
        ort_quantize(QuantizeConfig(artifact=src, out=tmp_path / "out", method="static"), texts=["", "  "])
    _assert_nothing_left(tmp_path)


@pytest.mark.parametrize("method,target", [("dynamic", "tensorrt"), ("fp16", "avx512-vnni"), ("optimize", "arm64"),
                                           ("static", "cuda"), ("static", "nope")])
def test_preset_mismatch(src, tmp_path, method, target):
    with pytest.raises(ConfigError, match="target"):
        quantize(src, tmp_path / "out", method=method, target=target)
    _assert_nothing_left(tmp_path)


def test_bad_config():
    from quantization.config import QuantizeConfig

    for kw in ({"backend": "tvm"}, {"method": "int4"}, {"calibrate_method": "mse"}, {"calibration_size": -1}):
        with pytest.raises(ConfigError):
            QuantizeConfig(artifact="a", out="b", **kw)
    with pytest.raises(ConfigError, match="differ"):
        QuantizeConfig(artifact="a", out="a")


def test_torch_artifact_is_refused(tiny_artifacts, tmp_path):
    with pytest.raises(ConfigError, match="torch artifact"):
        quantize(tiny_artifacts[TASK, "torch"], tmp_path / "out")
    _assert_nothing_left(tmp_path)


def test_failure_keeps_existing_artifact(src, built, tmp_path):
    """A failing rebuild over an existing artifact leaves it untouched (staged, then renamed)."""
    import shutil

    out = tmp_path / "keep"
    shutil.copytree(built["dynamic", None], out)
    before = (out / "manifest.json").read_text()
    with pytest.raises(QuantizationError):
        quantize(src, out, method="static", calibration_size=3)
    assert (out / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]


def test_openvino_backend_is_pluggable(src, tmp_path, monkeypatch):
    """The dispatch table names quantization.openvino_int8:quantize; absent, it is a clean BackendUnavailable."""
    import quantization.api as api

    assert api.RECIPES["openvino"] == "quantization.openvino_int8:quantize"
    monkeypatch.setitem(api.RECIPES, "openvino", "quantization.no_such_recipe:quantize")
    with pytest.raises(BackendUnavailable, match="openvino"):
        quantize(src, tmp_path / "out", backend="openvino", method="int8")


def test_cli(src, tmp_path, capsys):
    from distilbert_deploy.cli import main

    assert main(["quantize", str(src), "--out", str(tmp_path / "dyn"), "--method", "dynamic",
                 "--target", "avx2"]) == 0
    out = capsys.readouterr().out
    assert "int8" in out and "avx2" in out and (tmp_path / "dyn" / "manifest.json").is_file()
    m = json.loads((tmp_path / "dyn" / "manifest.json").read_text())
    assert m["recipe"]["reduce_range"] is True
    assert main(["quantize", str(tmp_path / "dyn"), "--out", str(tmp_path / "x"), "--method", "dynamic"]) == 2
    assert "already INT8" in capsys.readouterr().err and not (tmp_path / "x").exists()


# ------------------------------------------------------------------ accuracy control (quantization.ort_accuracy)

def _control(path):
    return json.loads((path / "manifest.json").read_text())["recipe"]["accuracy_control"]


def _relative_error(src, built_path, task=TASK):
    """||int8 - fp32|| / ||fp32|| on the recorded validation rows, recomputed here with plain ORT sessions."""
    import numpy as np
    import onnxruntime as ort

    from quantization.ort_accuracy import validation_set

    val = validation_set(src, task, (), 0)
    ref, got = (ort.InferenceSession(str(p / "model.onnx"), providers=["CPUExecutionProvider"])
                for p in (src, built_path))
    dd = rr = 0.0
    for feed, _, _ in val.batches:
        real = feed["attention_mask"].astype(bool)
        for r, g in zip(ref.run(None, feed), got.run(None, feed)):
            r, g = r[real].astype(np.float64), g[real].astype(np.float64)
            dd, rr = dd + ((g - r) ** 2).sum(), rr + (r ** 2).sum()
    return float(np.sqrt(dd / rr))


@pytest.mark.search
@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_accuracy_control_keeps_sensitive_nodes_fp32(src, tmp_path, method):
    """A loose bound quantizes every encoder node; a planted bound at half that model's error forces the fallback
    to keep the most sensitive nodes fp32, and the written model really meets it."""
    import onnx

    from quantization.ort_accuracy import REL_ERR_PER_POINT

    loose = quantize(src, tmp_path / "loose", method=method, max_accuracy_drop=1.0)
    acc = loose.recipe["accuracy_control"]
    full = acc["int8_all_nodes"]["relative_error"]
    assert acc["kept_fp32"] == [] and acc["int8"] == acc["int8_all_nodes"] and full > 0
    assert "train tweets" in acc["validation"] and acc["fp32"]["relative_error"] == 0.0
    assert abs(_relative_error(src, tmp_path / "loose") - full) < 1e-3

    drop = full / 2 / REL_ERR_PER_POINT
    tight = quantize(src, tmp_path / "tight", method=method, max_accuracy_drop=drop)
    acc = tight.recipe["accuracy_control"]
    bound = acc["bound"]["max_relative_error"]
    assert acc["kept_fp32"], "a bound at half the all-INT8 error must keep some nodes fp32"
    ranked = list(acc["sensitivity"])
    assert len(ranked) == acc["quantizable_nodes"] and acc["kept_fp32"] == ranked[:len(acc["kept_fp32"])]
    assert len(acc["kept_fp32"]) < len(ranked)
    assert acc["int8"]["relative_error"] <= bound < full
    assert _relative_error(src, tmp_path / "tight") <= bound + 1e-3
    assert tight.recipe["fp32_nodes"] == ["task head", *acc["kept_fp32"]]
    # the kept nodes are plain fp32 MatMuls on the original weights; the rest of the encoder is quantized
    graph = onnx.load(str(tmp_path / "tight" / "model.onnx")).graph
    ops = {n.name: n.op_type for n in graph.node}
    assert all(ops.get(n) == "MatMul" for n in acc["kept_fp32"])
    quantized_ops = {"MatMulInteger", "DynamicQuantizeLinear"} if method == "dynamic" else {"DequantizeLinear"}
    assert quantized_ops & set(ops.values())
    if method == "static":  # the kept nodes' weights have no QDQ pair in front of them
        producers = {o: n for n in graph.node for o in n.output}
        kept = [n for n in graph.node if n.name in acc["kept_fp32"]]
        assert all(producers.get(n.input[1]) is None or producers[n.input[1]].op_type != "DequantizeLinear"
                   for n in kept)
    # the recipe the search found, replayed by naming its nodes: the same model, checked once, no search
    replay = quantize(src, tmp_path / "replay", method=method, max_accuracy_drop=drop, keep_fp32=acc["kept_fp32"])
    again = replay.recipe["accuracy_control"]
    assert again["kept_fp32"] == acc["kept_fp32"] and again["evaluations"] == 1 and "sensitivity" not in again
    assert again["search"].startswith("none") and again["int8"] == acc["int8"]
    assert replay.recipe["fp32_nodes"] == tight.recipe["fp32_nodes"]


def test_named_fp32_nodes_are_kept_without_a_search_and_still_meet_the_bound(src, tmp_path):
    """--keep-fp32: exactly those encoder nodes stay fp32, one evaluation checks the bound; a name that is no
    encoder node, a recipe without nodes to keep, or a bound the named nodes miss are errors that write nothing."""
    import onnx

    from quantization.ort_quant import encoder_nodes

    nodes = encoder_nodes(src / "model.onnx")
    keep = (nodes[0], nodes[-1])
    m = quantize(src, tmp_path / "kept", method="dynamic", max_accuracy_drop=1.0, keep_fp32=keep)
    acc = m.recipe["accuracy_control"]
    assert acc["kept_fp32"] == list(keep) and acc["evaluations"] == 1 and acc["search"].startswith("none")
    assert m.recipe["fp32_nodes"] == ["task head", *keep]
    ops = {n.name: n.op_type for n in onnx.load(str(tmp_path / "kept" / "model.onnx")).graph.node}
    assert all(ops[n] == "MatMul" for n in keep) and "MatMulInteger" in ops.values()
    with pytest.raises(ConfigError, match=r"--keep-fp32 names \['/no/such/MatMul'\].*Fix: copy the names"):
        quantize(src, tmp_path / "bad", method="dynamic", keep_fp32=("/no/such/MatMul",))
    with pytest.raises(ConfigError, match="--keep-fp32 names encoder nodes for the onnxruntime dynamic and static"):
        quantize(src, tmp_path / "opt", method="optimize", keep_fp32=keep)
    with pytest.raises(QuantizationError, match="with the 2 named fp32 nodes misses the bound.*Nothing was written"):
        quantize(src, tmp_path / "miss", method="dynamic", max_accuracy_drop=0.0, keep_fp32=keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


@pytest.mark.search
def test_impossible_bound_writes_nothing(src, tmp_path):
    """max_accuracy_drop=0 asks for outputs identical to fp32: no INT8 model meets it, so nothing is written."""
    with pytest.raises(QuantizationError, match="cannot meet the bound.*Nothing was written"):
        quantize(src, tmp_path / "out", method="dynamic", max_accuracy_drop=0.0)
    _assert_nothing_left(tmp_path)


@pytest.mark.search
def test_accuracy_control_text_classification(tiny_artifacts, tmp_path):
    """Labelled validation: fp32 and INT8 accuracy are recorded and the INT8 model is within the drop."""
    import numpy as np
    import onnxruntime as ort

    from sources.tweets import LABELS
    from quantization.ort_accuracy import validation_set

    src = tiny_artifacts["text-classification", "onnxruntime"]
    m = quantize(src, tmp_path / "tc", method="static", target="arm64", max_accuracy_drop=0.02)
    acc = m.recipe["accuracy_control"]
    assert acc["bound"] == {**acc["bound"], "max_accuracy_drop": 0.02, "max_flip_rate": 0.06}
    assert acc["fp32"]["accuracy"] - acc["int8"]["accuracy"] <= 0.02 and acc["int8"]["flip_rate"] <= 0.06
    assert "2000 labelled train tweets" in acc["validation"]
    # the recorded INT8 accuracy is the written model's accuracy on those tweets
    val = validation_set(src, "text-classification", LABELS, 16)
    sess = ort.InferenceSession(str(tmp_path / "tc" / "model.onnx"), providers=["CPUExecutionProvider"])
    hits = sum(LABELS[int(p)] == y for feed, _, ys in val.batches
               for p, y in zip(sess.run(None, feed)[0].argmax(-1), ys))
    assert np.isclose(hits / val.n_rows, acc["int8"]["accuracy"])
