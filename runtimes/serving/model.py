"""One served model: an artifact loaded through the registry (checksums verified, parity verdict checked), its
runtime instances behind a DynamicBatcher, and the translation between OIP tensors or pipeline inputs and the
task layer's rows. No HTTP here."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..artifact import Artifact, load_artifact
from ..base import RuntimeOptions
from ..errors import ConfigError, InputError, ParityError
from ..heads import get_head
from ..registry import runtime_class
from ..tasks.feature_extraction import pooling_config
from ..tasks.text_tensors import per_input, text_inputs, texts_of
from ..triton_config import DATATYPES, PLATFORMS, dims_of, model_config
from .batcher import BatchObserver, DynamicBatcher, text_rows
from .config import NAME, ServeConfig
from .oip import datatype_of

log = logging.getLogger("distilbert_deploy.serve")
VERSION = "1"
SERVICE_PARAMETERS = ("binary_data_output", "timeout", "truncation")  # read by the service, not the task layer
WARMUP_LENGTHS = (8, 16, 32, 64, 128, 256, 512)


def verdict(artifact: Artifact) -> tuple[str, str]:
    """('passed' | 'failed' | 'unjudged', why) from the manifest's parity record."""
    m = artifact.manifest
    suite = m.parity.get("suite")
    if suite:
        failed = [p for p, r in suite.get("runs", {}).items() if not r.get("passed")]
        if suite.get("passed") and not failed:
            return "passed", f"parity suite passed ({', '.join(suite.get('runs', {}))})"
        return "failed", f"parity suite failed for precision {', '.join(failed) or '?'}"
    v = m.parity.get("export_validation")
    if m.precision == "fp32" and v:
        return ("passed", "fp32 export validated against PyTorch") if v.get("passed") else \
            ("failed", "its export validation failed")
    return "unjudged", "no parity-suite verdict recorded"


def model_dirs(cfg: ServeConfig) -> list[tuple[str, Path]]:
    """(name, artifact dir) for every model the config names; names are unique and safe."""
    pairs = [(n, Path(p)) for n, p in zip(cfg.names or [Path(p).name for p in cfg.artifacts], cfg.artifacts)]
    if cfg.repository is not None:
        repo = Path(cfg.repository)
        if not repo.is_dir():
            raise ConfigError(f"--repository '{repo}' is not a directory. Expected DIR/<model name>/manifest.json")
        found = sorted(d for d in repo.iterdir() if (d / "manifest.json").is_file() and not d.name.startswith("."))
        if not found:
            raise ConfigError(f"--repository '{repo}' holds no artifact: expected DIR/<model name>/manifest.json")
        pairs += [(d.name, d) for d in found]
    seen: dict[str, Path] = {}
    for name, path in pairs:
        if not NAME.match(name):
            raise ConfigError(f"model name '{name}' (from {path}) is not allowed: use letters, digits, '_', '.', '-'. "
                              f"Fix: --name NAME")
        if name in seen:
            raise ConfigError(f"two models are named '{name}' ({seen[name]} and {path}). Fix: give each artifact a "
                              f"--name")
        seen[name] = path
    return pairs


class ServedModel:
    def __init__(self, name: str, path: Path, cfg: ServeConfig):
        """Cheap and strict: the manifest, every checksum, the parity verdict and the batch limit."""
        self.name, self.cfg = name, cfg
        self.artifact = load_artifact(path, verify=True)
        m = self.manifest = self.artifact.manifest
        self.head = get_head(m.task)
        status, why = verdict(self.artifact)
        if status == "failed":
            raise ParityError(f"refusing to serve '{path}': {why}. Its answers are not trusted. Fix: rebuild it and "
                              f"run `distilbert-deploy parity {path}` until it passes")
        if status == "unjudged":
            if not cfg.allow_unjudged:
                raise ParityError(f"refusing to serve '{path}': {why}. Fix: run `distilbert-deploy parity {path}`, "
                                  f"or pass --allow-unjudged to serve it anyway")
            log.warning("serving '%s' unjudged (%s): run `distilbert-deploy parity %s`", name, why, path)
        self.judged = why
        prof = m.shape_profile
        self.max_length = int(prof["max"]["sequence"])
        self.max_rows = int(prof["max"]["batch"])
        if cfg.max_batch_size > self.max_rows:
            raise ConfigError(f"--max-batch-size {cfg.max_batch_size} is over what '{path}' accepts "
                              f"({self.max_rows} rows, its shape profile). Fix: --max-batch-size {self.max_rows} or "
                              f"less, or re-export with --max-batch {cfg.max_batch_size}")
        self.text_inputs = text_inputs(m.task)
        self.runtimes: list = []
        self.batcher: DynamicBatcher | None = None
        self.ready = False

    # lifecycle
    def load(self, observer: BatchObserver | None = None) -> None:
        from ..tasks import TaskPipeline, load_tokenizer

        options = RuntimeOptions(device=self.cfg.device, threads=self.cfg.threads, spin=self.cfg.spin,
                                 cuda_graphs=self.cfg.cuda_graphs)
        cls = runtime_class(self.manifest.backend)
        self.runtimes = [cls(self.artifact, options).load() for _ in range(self.cfg.instances)]
        self.tokenizer = load_tokenizer(self.artifact.path)
        self.vocab = len(self.tokenizer)
        self.pipelines = {mode: TaskPipeline(self.runtimes[0], self.tokenizer, self.manifest.task, self.manifest.labels,
                                             max_length=self.max_length, on_overflow=mode,
                                             batch_size=self.cfg.max_batch_size)
                          for mode in ("truncate", "error")}
        axes = {o.name: (o.dims.index("sequence") - 1 if "sequence" in o.dims else None) for o in self.manifest.outputs}
        if self.cfg.warmup:
            self.warm_up()
        self.batcher = DynamicBatcher([r.infer for r in self.runtimes], pad_id=self.tokenizer.pad_token_id or 0,
                                      max_batch_size=self.cfg.max_batch_size,
                                      max_queue_delay_s=self.cfg.max_queue_delay_ms / 1000,
                                      max_queue=self.cfg.max_queue, sequence_axes=axes,
                                      max_padding=self.cfg.max_padding, max_batch_tokens=self.cfg.max_batch_tokens,
                                      observer=observer,
                                      name=self.name)
        self.ready = True

    def warm_up(self) -> None:
        """Every instance over the length buckets (a bucketed OpenVINO artifact's own, else WARMUP_LENGTHS; one row and
        two rows each, which compiles its batch-1 and batch models), and a full batch of short rows."""
        choices = (2,) if self.head.multiple_choice else ()
        for rt in self.runtimes:
            lengths = [n for n in rt.describe().get("sequence_buckets") or WARMUP_LENGTHS if n <= self.max_length]
            shapes = [(b, n) for b in sorted({1, min(2, self.max_rows)}) for n in lengths]
            for b, n in shapes + [(self.cfg.max_batch_size, 32)]:
                ids = np.full((b, *choices, n), 1000, dtype=np.int64)
                rt.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)})

    def close(self) -> None:
        self.ready = False
        if self.batcher:
            self.batcher.close()
        for rt in self.runtimes:
            rt.close()

    # description
    def metadata(self) -> dict:
        return {"name": self.name, "versions": [VERSION], "platform": PLATFORMS.get(self.manifest.backend, "custom"),
                "inputs": [_tensor_meta(t.name, DATATYPES[t.dtype], t.dims) for t in self.manifest.inputs],
                "outputs": [_tensor_meta(t.name, DATATYPES[t.dtype], t.dims) for t in self.manifest.outputs],
                "parameters": {"task": self.manifest.task, "precision": self.manifest.precision,
                               "text_inputs": [n for n, _ in self.text_inputs], "parity": self.judged,
                               **self._pooling()}}

    def _pooling(self) -> dict:
        return {"pooling": pooling_config(self.manifest)} if self.manifest.task == "feature-extraction" else {}

    def triton_config(self) -> dict:
        """Triton's model configuration JSON (max_batch_size > 0: dims exclude the batch axis)."""
        m, cfg = self.manifest, self.cfg
        text = [(n, "string", [-1] if n == "choices" else [], True) for n, _ in self.text_inputs]
        queue = {"max_queue_size": cfg.max_queue, "default_timeout_microseconds": int(cfg.timeout_s * 1e6)}
        return model_config(self.name, [(t.name, t.dtype, t.dims[1:], True) for t in m.inputs] + text,
                            [(t.name, t.dtype, t.dims[1:]) for t in m.outputs], max_batch_size=cfg.max_batch_size,
                            platform=PLATFORMS.get(m.backend, "custom"), backend=m.backend, instances=cfg.instances,
                            dynamic_batching={"max_queue_delay_microseconds": int(cfg.max_queue_delay_ms * 1000),
                                              "default_queue_policy": queue},
                            parameters={"task": m.task}, version_policy={"latest": {"num_versions": 1}})

    # requests -> rows
    def pipeline(self, truncation: bool):
        return self.pipelines["truncate" if truncation else "error"]

    def text_inputs_of(self, tensors: dict[str, np.ndarray]) -> list:
        return texts_of(self.name, self.manifest, tensors)

    def raw_rows(self, tensors: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """input_ids / attention_mask as the manifest declares them -> one (ids, mask) row per batch entry."""
        specs = {t.name: t for t in self.manifest.inputs}
        if set(tensors) != set(specs):
            raise InputError(f"model '{self.name}' takes raw tensors {sorted(specs)} together; got {sorted(tensors)}")
        shapes = {a.shape for a in tensors.values()}
        for name, spec in specs.items():
            a = tensors[name]
            if a.dtype != np.dtype(spec.dtype):
                raise InputError(f"input '{name}' is {datatype_of(a)}; expected {DATATYPES[spec.dtype]}")
            if a.ndim != len(spec.dims):
                raise InputError(f"input '{name}' has shape {list(a.shape)}; expected {len(spec.dims)} axes "
                                 f"({', '.join(map(str, spec.dims))})")
        if len(shapes) != 1:
            raise InputError(f"input_ids and attention_mask must have one shape; got "
                             f"{ {n: list(a.shape) for n, a in tensors.items()} }")
        shape = shapes.pop()
        prof = self.manifest.shape_profile
        for axis, size in zip(specs["input_ids"].dims, shape):
            lo, hi = prof["min"].get(axis, 1), prof["max"].get(axis)
            if axis != "batch" and (size < lo or (hi is not None and size > hi)):
                raise InputError(f"axis '{axis}' is {size}; this model accepts {lo}..{hi}")
        if shape[0] == 0:
            raise InputError("the batch axis is 0; send at least one row")
        ids, mask = tensors["input_ids"], tensors["attention_mask"]
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab):
            raise InputError(f"input_ids must lie in [0, {self.vocab}) (the tokenizer's vocabulary); got "
                             f"{int(ids.min())}..{int(ids.max())}")
        if not np.isin(mask, (0, 1)).all():
            raise InputError("attention_mask must hold only 0 and 1")
        return [(np.ascontiguousarray(ids[b]), np.ascontiguousarray(mask[b])) for b in range(shape[0])]

    def rows_of(self, job) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.rows_of_ids(job.rows)

    def rows_of_ids(self, rows: list) -> list[tuple[np.ndarray, np.ndarray]]:
        return text_rows(rows, self.tokenizer.pad_token_id or 0)

    def token_rows(self, items: list, truncate: bool) -> list[list[int]]:
        """Token-id lists as a client sent them (OpenAI's `input` as token arrays): checked against the
        vocabulary and the model's length, cut to it only when asked."""
        rows = []
        for i, ids in enumerate(items):
            if not isinstance(ids, list) or not ids or not all(type(t) is int for t in ids):
                raise InputError(f"input #{i} must be a non-empty string or a non-empty list of token ids; got "
                                 f"{type(ids).__name__}. Fix: send all strings or all token-id lists")
            if bad := [t for t in ids if not 0 <= t < self.vocab][:3]:
                raise InputError(f"input #{i} has token ids {bad} outside [0, {self.vocab}) (the vocabulary)")
            if len(ids) > self.max_length:
                if not truncate:
                    raise InputError(f"input #{i} holds {len(ids)} tokens; this model takes at most "
                                     f"{self.max_length}. Fix: shorten it, or send \"truncate\": true")
                ids = ids[:self.max_length]
            rows.append(ids)
        return rows

    def per_input(self, answers, n: int) -> list:
        return per_input(self.manifest.task, answers, n)

    def text_outputs(self, answers: list) -> dict[str, np.ndarray]:
        """Pipeline answers as OIP tensors: `answer` (JSON per input) for every task, typed ones where each
        answer is one record (label/score; QA text/score/start/end; multiple-choice choice)."""
        out = {"answer": np.array([json.dumps(a, ensure_ascii=False).encode() for a in answers], dtype=np.object_)}
        if not all(isinstance(a, dict) for a in answers):
            return out
        task = self.manifest.task
        if task == "text-classification":
            out["label"] = np.array([a["label"].encode() for a in answers], dtype=np.object_)
            out["score"] = np.array([a["score"] for a in answers], dtype=np.float32)
        elif task == "question-answering":
            out["answer_text"] = np.array([a["answer"].encode() for a in answers], dtype=np.object_)
            out["score"] = np.array([a["score"] for a in answers], dtype=np.float32)
            out["start"] = np.array([a["start"] for a in answers], dtype=np.int64)
            out["end"] = np.array([a["end"] for a in answers], dtype=np.int64)
        elif task == "multiple-choice":
            out["choice"] = np.array([a["choice"] for a in answers], dtype=np.int64)
        return out


def _tensor_meta(name: str, datatype: str, dims) -> dict:
    return {"name": name, "datatype": datatype, "shape": dims_of(dims)}


def api_key(cfg: ServeConfig) -> str | None:
    if cfg.api_key_env is None:
        return None
    key = os.environ.get(cfg.api_key_env, "")
    if not key:
        raise ConfigError(f"--api-key-env {cfg.api_key_env}: the variable is unset or empty. Fix: export "
                          f"{cfg.api_key_env}=<secret>, or drop --api-key-env to serve without a key")
    return key


def load_models(cfg: ServeConfig) -> dict[str, ServedModel]:
    """Every model checked (manifest, checksums, verdict) before any is loaded: one bad artifact stops the start."""
    return {name: ServedModel(name, path, cfg) for name, path in model_dirs(cfg)}
