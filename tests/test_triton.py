"""Triton model repository: native-backend configs for ONNX, OpenVINO and TensorRT-RTX artifacts parsed against
Triton's ModelConfig schema, and the --python-runtime repository served live by the real tritonserver that
nvidia-pytriton bundles (.venv-triton), queried with tritonclient: raw tensors and the text ensemble answer like
the in-process runtime and pipeline."""
import json
from pathlib import Path

import numpy as np
import pytest

from runtimes.errors import ConfigError, ExportError
from runtimes.heads import TASKS

from tiny_tasks import CONTEXT, QUESTIONS, SENTENCES, same


TEXTS = {  # the ensemble's text inputs per task (the service's names) and the pipeline inputs they mean
    "text-classification": ({"text": SENTENCES[:3]}, SENTENCES[:3]),
    "token-classification": ({"text": SENTENCES[1:3]}, SENTENCES[1:3]),
    "fill-mask": ({"text": ["Paris is the [MASK] of France."]}, ["Paris is the [MASK] of France."]),
    "feature-extraction": ({"text": SENTENCES[3:5]}, SENTENCES[3:5]),
    "question-answering": ({"question": QUESTIONS, "context": [CONTEXT] * len(QUESTIONS)},
                           [{"question": q, "context": CONTEXT} for q in QUESTIONS]),
    "multiple-choice": ({"prompt": ["The weather today is", "She drank a cup of"],
                         "choices": [["sunny and warm", "a database index"], ["hot tea", "gravel"]]},
                        [{"prompt": "The weather today is", "choices": ["sunny and warm", "a database index"]},
                         {"prompt": "She drank a cup of", "choices": ["hot tea", "gravel"]}]),
}


def export(artifacts, out, **kw):
    from exporters.triton_repo import TritonExportConfig, export_triton

    return export_triton(TritonExportConfig(artifacts=tuple(artifacts), out=out, **kw))


def parse(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.openvino
@pytest.mark.tensorrt
def test_native_repository_for_onnx_openvino_and_tensorrt_rtx_is_schema_valid(tiny_artifacts, tiny_openvino,
                                                                                tmp_path):
    from conftest import require_rtx

    require_rtx()  # full TensorRT cannot build for sm89 without that GPU
    from exporters.tensorrt_export import TrtExportConfig, export_trt

    tc = "text-classification"
    engine = tmp_path / "trt"
    export_trt(TrtExportConfig(src=tiny_artifacts[tc, "onnxruntime"], out=engine, flavor="tensorrt-rtx",
                               targets=("sm89",)))
    arts = [tiny_artifacts[tc, "onnxruntime"], tiny_openvino(tc, "fp32"), engine, tiny_artifacts["multiple-choice", "onnxruntime"]]
    repo = tmp_path / "repo"
    record = export(arts, repo, names=("tc-onnx", "tc-ov", "tc-trt", "mc-onnx"), max_batch_size=8, instances=2)
    models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    assert models == sorted(f"{n}{s}" for n in ("tc-onnx", "tc-ov", "tc-trt", "mc-onnx")
                            for s in ("", "-tokenizer", "-postprocess", "-text"))
    onnx, ov, trt, mc = (parse(repo / n / "config.pbtxt") for n in ("tc-onnx", "tc-ov", "tc-trt", "mc-onnx"))
    assert (onnx.backend, ov.backend, trt.platform) == ("onnxruntime", "openvino", "tensorrt_plan")
    assert (repo / "tc-onnx/1/model.onnx").is_file() and (repo / "tc-trt/1/model.plan").is_file()
    assert (repo / "tc-ov/1/model.xml").is_file() and (repo / "tc-ov/1/model.bin").is_file()
    assert [(i.name, i.data_type, list(i.dims)) for i in onnx.input] == [("input_ids", 9, [-1]), ("attention_mask", 9, [-1])]
    assert [(o.name, o.data_type, list(o.dims)) for o in onnx.output] == [("logits", 11, [3])]  # TYPE_FP32, 3 labels
    assert [list(i.dims) for i in mc.input] == [[-1, -1], [-1, -1]] and list(mc.output[0].dims) == [-1]
    assert onnx.max_batch_size == 8 and list(onnx.dynamic_batching.preferred_batch_size) == [4, 8]
    assert (onnx.instance_group[0].kind, trt.instance_group[0].kind) == (2, 1)  # KIND_CPU, KIND_GPU
    assert onnx.instance_group[0].count == trt.instance_group[0].count == 2
    ensemble = parse(repo / "tc-onnx-text" / "config.pbtxt")
    assert ensemble.platform == "ensemble" and [s.model_name for s in ensemble.ensemble_scheduling.step] == \
        ["tc-onnx-tokenizer", "tc-onnx", "tc-onnx-postprocess"]
    assert json.loads((repo / "tc-trt" / "manifest.json").read_text())["backend"] == "tensorrt"
    readme = (repo / "README.md").read_text()
    assert "runs only on compute capability sm89" in readme and "TensorRT-RTX engines need a Triton built" in readme
    assert record["models"]["tc-ov"]["triton_backend"] == 'backend: "openvino"'
    assert json.loads((repo / "repository.json").read_text()) == record


def test_an_invalid_config_fails_the_export_with_line_and_column_and_writes_nothing(tiny_artifacts, tmp_path,
                                                                                   monkeypatch):
    from exporters import triton_repo

    with pytest.raises(ExportError, match=r"'x' is not a valid Triton ModelConfig: 1:\d+ : .*max_queue_delay_ms"):
        triton_repo.schema_check({"x": "dynamic_batching { max_queue_delay_ms: 5 }\n"})
    with pytest.raises(ExportError, match="KIND_CPUX"):
        triton_repo.schema_check({"x": "instance_group [ { count: 1 kind: KIND_CPUX } ]\n"})
    real = triton_repo.model_configs
    monkeypatch.setattr(triton_repo, "model_configs", lambda *a: {
        k: {("max_batch" if f == "max_batch_size" else f): x for f, x in v.items()} for k, v in real(*a).items()})
    with pytest.raises(ExportError, match="'onnxruntime' is not a valid Triton ModelConfig: .*has no field named "
                                          "\"max_batch\""):
        export([tiny_artifacts["fill-mask", "onnxruntime"]], tmp_path / "repo")
    assert not (tmp_path / "repo").exists() and not list(tmp_path.glob(".repo*"))


def test_bad_requests_for_a_repository_are_clear(tiny_artifacts, tmp_path):
    torch_art = tiny_artifacts["text-classification", "torch"]
    with pytest.raises(ConfigError, match="no native backend for it here. Fix: --python-runtime"):
        export([torch_art], tmp_path / "a")
    with pytest.raises(ConfigError, match="--onnx-tensorrt is ORT's TensorRT accelerator: a GPU option"):
        export([tiny_artifacts["text-classification", "onnxruntime"]], tmp_path / "b", onnx_tensorrt=True)
    with pytest.raises(ConfigError, match="model names must be unique"):
        export([torch_art, torch_art], tmp_path / "c", python_runtime=True)


@pytest.fixture(scope="module")
def triton(runtime_of, tmp_path_factory):
    """The --python-runtime repository of the scaled tiny models (every task), served by the bundled tritonserver."""
    from exporters.triton_server import tritonserver

    paths = {task: runtime_of(task, "onnxruntime").artifact.path for task in TASKS}
    root = tmp_path_factory.mktemp("triton")
    export(list(paths.values()), root / "repo", names=tuple(TASKS), python_runtime=True, max_batch_size=8)
    with tritonserver(root / "repo", root) as server:
        yield {**server, "paths": paths}


@pytest.mark.triton
@pytest.mark.server
def test_bundled_tritonserver_serves_raw_tensors_like_the_runtime(triton, runtime_of):
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    from runtimes.pipeline import load_pipeline

    clients = ((http, http.InferenceServerClient(triton["http"])), (grpc, grpc.InferenceServerClient(triton["grpc"])))
    for task in TASKS:
        rt = runtime_of(task, "onnxruntime")
        tok = load_pipeline(triton["paths"][task]).tokenizer
        texts = SENTENCES[:3]
        enc = tok(texts, padding=True, return_tensors="np")
        feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        if task == "multiple-choice":
            feed = {k: np.stack([v, v[::-1]], axis=1) for k, v in feed.items()}  # 3 prompts x 2 choices
        want = rt.infer(feed)
        for mod, client in clients:
            inputs = []
            for name, arr in feed.items():
                t = mod.InferInput(name, list(arr.shape), "INT64")
                t.set_data_from_numpy(arr)
                inputs.append(t)
            r = client.infer(task, inputs)
            for name, ref in want.items():
                np.testing.assert_allclose(r.as_numpy(name), ref, atol=1e-6, err_msg=f"{task} {mod.__name__}")


@pytest.mark.triton
@pytest.mark.server
@pytest.mark.parametrize("task", TASKS)
def test_text_ensemble_answers_like_the_pipeline(triton, task):
    import tritonclient.http as http

    from runtimes.pipeline import load_pipeline

    fields, inputs = TEXTS[task]
    client = http.InferenceServerClient(triton["http"])
    tensors = []
    for name, values in fields.items():
        arr = np.array([[v.encode() for v in x] if isinstance(x, list) else x.encode() for x in values], dtype=np.object_)
        t = http.InferInput(name, list(arr.shape), "BYTES")
        t.set_data_from_numpy(arr)
        tensors.append(t)
    r = client.infer(f"{task}-text", tensors)
    got = [json.loads(x) for x in r.as_numpy("answer")]
    pipe = load_pipeline(triton["paths"][task])
    want = pipe(inputs)
    if len(inputs) == 1 and task in ("fill-mask", "question-answering"):
        want = [want]
    same(got, want)
    pipe.runtime.close()


@pytest.mark.triton
@pytest.mark.server
def test_a_bad_text_request_is_an_error_and_the_server_stays_up(triton):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(triton["http"])
    t = http.InferInput("text", [1], "BYTES")
    t.set_data_from_numpy(np.array([b"   "], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="must be a non-empty string"):
        client.infer("text-classification-text", [t])
    assert client.is_server_live() and client.is_model_ready("text-classification-text")
