"""Artifacts -> a Triton Inference Server model repository.

Per artifact NAME:
- NAME: the model in Triton's native backend for its type (ONNX -> onnxruntime, OpenVINO IR -> openvino,
  TensorRT engine -> tensorrt `model.plan`), or with --python-runtime the project's own runtime inside Triton's
  python backend (runs on any Triton, the CPU-only one bundled with nvidia-pytriton included);
- NAME-tokenizer and NAME-postprocess (python backend: the project's tokenizer and task layer) and the ensemble
  NAME-text: clients send the service's text inputs and get its `answer` JSON, one per input.
Every config.pbtxt is parsed against Triton's ModelConfig schema (tritonclient's model_config_pb2) before anything
is written; the repository is staged and renamed into place."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from runtimes.artifact import Artifact, load_artifact, staging_dir, write_text_atomic
from runtimes.errors import BackendUnavailable, ConfigError, ExportError
from runtimes.heads import get_head
from runtimes.triton_config import model_config

KINDS = ("cpu", "gpu")
MODELS_DIR = Path(__file__).parent / "triton_models"
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json",
              "manifest.json")
MARKER = "repository.json"  # what this is and what it holds; Triton ignores files at the repository root
NATIVE = {  # backend -> (its ModelConfig field, model files in the version dir)
    "onnxruntime": ({"backend": "onnxruntime"}, {"model.onnx": "model.onnx"}),
    "openvino": ({"backend": "openvino"}, {"model.xml": "model.xml", "model.bin": "model.bin"}),
    "tensorrt": ({"platform": "tensorrt_plan"}, {"model.engine": "model.plan"}),
}


@dataclass(frozen=True)
class TritonExportConfig:
    artifacts: tuple[Path, ...]
    out: Path
    names: tuple[str, ...] = ()
    max_batch_size: int = 16
    instances: int = 1
    kind: str | None = None  # cpu / gpu; None: gpu for TensorRT engines, cpu otherwise
    python_runtime: bool = False
    max_queue_delay_us: int = 2000
    onnx_tensorrt: bool = False  # ONNX models on GPU: ORT's TensorRT execution accelerator (fp16)

    def __post_init__(self):
        if not self.artifacts:
            raise ConfigError("no artifacts given. Fix: pass artifact directories (they hold manifest.json)")
        if self.names and len(self.names) != len(self.artifacts):
            raise ConfigError(f"{len(self.names)} --name for {len(self.artifacts)} artifacts; give one per artifact")
        if self.kind is not None and self.kind not in KINDS:
            raise ConfigError(f"unknown --kind '{self.kind}'. Expected one of: {', '.join(KINDS)}")
        if self.max_batch_size < 1 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise ConfigError("--max-batch-size and --instances must be >= 1, the queue delay >= 0")


def export_triton(cfg: TritonExportConfig) -> dict:
    """Write the repository at cfg.out; returns the repository record (also written as repository.json)."""
    arts = [load_artifact(p) for p in cfg.artifacts]
    names = list(cfg.names) or [Path(p).name for p in cfg.artifacts]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique; got {names}. Fix: --name for each artifact")
    configs = {}
    for name, art in zip(names, arts):
        configs.update({model: to_pbtxt(model, config) for model, config in model_configs(name, art, cfg).items()})
    schema_check(configs)
    record = {"schema_version": 1, "python_runtime": cfg.python_runtime,
              "models": {n: describe(n, a, cfg) for n, a in zip(names, arts)}}
    with staging_dir(cfg.out, marker=MARKER) as tmp:
        for model, text in configs.items():
            (tmp / model / "1").mkdir(parents=True)
            write_text_atomic(tmp / model / "config.pbtxt", text)
        for name, art in zip(names, arts):
            write_models(tmp, name, art, cfg)
        write_text_atomic(tmp / "README.md", readme(record))
        write_text_atomic(tmp / MARKER, json.dumps(record, indent=1) + "\n")
    return record


def kind_of(art: Artifact, cfg: TritonExportConfig) -> str:
    if cfg.kind:
        return cfg.kind
    return "gpu" if art.manifest.backend == "tensorrt" else "cpu"


def model_configs(name: str, art: Artifact, cfg: TritonExportConfig) -> dict[str, dict]:
    """The four ModelConfigs of one artifact (runtimes.triton_config's JSON form): the model, its tokenizer and
    postprocess python models, and the text ensemble."""
    m = art.manifest
    backend = m.backend
    if not cfg.python_runtime and backend not in NATIVE:
        raise ConfigError(f"'{art.path}' is a {backend} artifact; Triton has no native backend for it here. "
                          f"Fix: --python-runtime (serves it through this project's runtime in the python backend)")
    kind = kind_of(art, cfg)
    if backend == "openvino" and kind == "gpu" and not cfg.python_runtime:
        raise ConfigError("Triton's openvino backend runs on CPU. Fix: --kind cpu")
    head = get_head(m.task)
    runs = {"backend": "python"} if cfg.python_runtime else NATIVE[backend][0]
    preferred = sorted({b for b in (4, 8, cfg.max_batch_size // 2, cfg.max_batch_size) if 1 <= b <= cfg.max_batch_size})
    extra: dict = {}
    if cfg.onnx_tensorrt and backend == "onnxruntime" and not cfg.python_runtime:
        if kind != "gpu":
            raise ConfigError("--onnx-tensorrt is ORT's TensorRT accelerator: a GPU option. Fix: --kind gpu")
        extra["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [
            {"name": "tensorrt", "parameters": {"precision_mode": "FP16"}}]}}
    model = model_config(name, [(t.name, t.dtype, t.dims[1:]) for t in m.inputs],
                         [(t.name, t.dtype, t.dims[1:]) for t in m.outputs], max_batch_size=cfg.max_batch_size,
                         instances=cfg.instances, kind=kind,
                         dynamic_batching={"preferred_batch_size": preferred,
                                           "max_queue_delay_microseconds": cfg.max_queue_delay_us},
                         parameters={"device": "cuda" if kind == "gpu" else "cpu"} if cfg.python_runtime else None,
                         **runs, **extra)
    text_in = [(n, "string", (-1, -1) if n == "choices" else (-1,)) for n, _ in text_fields(m.task)]
    rows = (-1, -1, -1) if head.multiple_choice else (-1, -1)
    answer = [("answer", "string", (-1,))]
    outputs = [(t.name, t.dtype, (-1, *t.dims[1:])) for t in m.outputs]
    tokenizer = model_config(f"{name}-tokenizer", text_in, [(t.name, t.dtype, rows) for t in m.inputs],
                             max_batch_size=0, backend="python")
    post = model_config(f"{name}-postprocess", text_in + outputs, answer, max_batch_size=0, backend="python")
    ensemble = model_config(f"{name}-text", text_in, answer, max_batch_size=0, platform="ensemble", instances=None,
                            ensemble_scheduling={"step": [
                                step(f"{name}-tokenizer", {n: n for n, *_ in text_in},
                                     {t.name: f"_{t.name}" for t in m.inputs}),
                                step(name, {t.name: f"_{t.name}" for t in m.inputs},
                                     {t.name: f"_{t.name}" for t in m.outputs}),
                                step(f"{name}-postprocess",
                                     {**{n: n for n, *_ in text_in}, **{t.name: f"_{t.name}" for t in m.outputs}},
                                     {"answer": "answer"})]})
    return {name: model, f"{name}-tokenizer": tokenizer, f"{name}-postprocess": post, f"{name}-text": ensemble}


def text_fields(task: str):
    """The service's required text inputs (Triton ensembles take no optional inputs: text_pair is left out)."""
    from runtimes.tasks.text_tensors import text_inputs

    return [(n, req) for n, req in text_inputs(task) if req]


def step(model: str, inputs: dict, outputs: dict) -> dict:
    return {"model_name": model, "model_version": -1, "input_map": inputs, "output_map": outputs}


def _model_config_pb2():
    try:
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        raise BackendUnavailable("triton", missing=[e.name or "tritonclient"],
                                 hint="pip install 'tritonclient[grpc]' (in this repo: the dev extra)") from None
    return json_format, text_format, model_config_pb2


def to_pbtxt(model: str, config: dict) -> str:
    """config.pbtxt of one ModelConfig: its JSON form read by protobuf (a wrong field or enum fails here), written
    as protobuf text."""
    json_format, text_format, pb2 = _model_config_pb2()
    try:
        return text_format.MessageToString(json_format.ParseDict(config, pb2.ModelConfig()))
    except json_format.ParseError as e:
        raise ExportError(f"the config of '{model}' is not a valid Triton ModelConfig: {e}. Nothing was written. "
                          f"This is a bug in the repository writer; the config was:\n{json.dumps(config)}") from None


def schema_check(configs: dict[str, str]) -> None:
    """Parse each config.pbtxt into Triton's ModelConfig message: a wrong field, type or enum fails here, with
    line:column, before anything is written."""
    _, text_format, model_config_pb2 = _model_config_pb2()
    for model, text in configs.items():
        try:
            text_format.Parse(text, model_config_pb2.ModelConfig())
        except text_format.ParseError as e:
            raise ExportError(f"config.pbtxt of '{model}' is not a valid Triton ModelConfig: {e}. Nothing was "
                              f"written. This is a bug in the repository writer; the config was:\n{text}") from None


def write_models(root: Path, name: str, art: Artifact, cfg: TritonExportConfig) -> None:
    m = art.manifest
    version = root / name / "1"
    if cfg.python_runtime:  # the whole artifact, checksums and all, loaded by runtimes.registry
        shutil.copytree(art.path, version / "artifact")
        shutil.copy2(MODELS_DIR / "runtime_model.py", version / "model.py")
    else:
        for src, dst in NATIVE[m.backend][1].items():
            shutil.copy2(art.path / src, version / dst)
    shutil.copy2(art.path / "manifest.json", root / name / "manifest.json")
    for part in ("tokenizer", "postprocess"):
        side = root / f"{name}-{part}" / "1"
        (side / "artifact").mkdir()
        for f in SIDE_FILES:
            if (art.path / f).is_file():
                shutil.copy2(art.path / f, side / "artifact" / f)
        shutil.copy2(MODELS_DIR / f"{part}_model.py", side / "model.py")


def describe(name: str, art: Artifact, cfg: TritonExportConfig) -> dict:
    m = art.manifest
    out = {"artifact": str(art.path.absolute()), "task": m.task, "backend": m.backend, "precision": m.precision,
           "triton_backend": "python (this project's runtime)" if cfg.python_runtime else
           " ".join(f'{k}: "{v}"' for k, v in NATIVE.get(m.backend, ({},))[0].items()),
           "kind": kind_of(art, cfg), "text_ensemble": f"{name}-text", "model_sha256": m.files[m.model_file]}
    if m.backend == "tensorrt":
        r = m.recipe
        out["tensorrt"] = {"flavor": r.get("flavor"), "version": r.get("tensorrt_version"),
                           "compute_capabilities": r.get("compute_capabilities")}
    return out


def readme(record: dict) -> str:
    lines = ["# Triton model repository (distilbert-deploy export-triton)", "",
             "Serve it: `tritonserver --model-repository THIS_DIR`. Each artifact is three models and an ensemble:",
             "NAME (raw tensors: input_ids, attention_mask), NAME-tokenizer and NAME-postprocess (python backend: "
             "distilbert-deploy's tokenizer and task layer; the Triton python environment needs "
             "`pip install distilbert-deploy`), and NAME-text (the ensemble: the service's text inputs in, its "
             "`answer` JSON out).", ""]
    for name, m in record["models"].items():
        lines.append(f"- `{name}`: {m['task']}, {m['backend']} {m['precision']}, Triton {m['triton_backend']}, "
                     f"KIND_{m['kind'].upper()}.")
        if "tensorrt" in m:
            t = m["tensorrt"]
            lines.append(f"  TensorRT engine: {t['flavor']} {t['version']}, runs only on compute capability "
                         f"{', '.join(t['compute_capabilities'])}. Triton's tensorrt backend must be built against "
                         f"that exact TensorRT" + (" (TensorRT-RTX engines need a Triton built with TensorRT-RTX; "
                                                   "the stock tensorrt backend cannot load them)"
                                                   if t["flavor"] == "tensorrt-rtx" else "") + ".")
    if record["python_runtime"]:
        lines += ["", "Python-runtime variant: NAME loads the artifact in `1/artifact` through "
                      "`runtimes.registry.load_runtime` (checksums verified); the Triton python environment needs "
                      "distilbert-deploy and the artifact's backend module (onnxruntime or openvino)."]
    return "\n".join(lines) + "\n"
