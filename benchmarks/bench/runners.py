"""What runs: one Runner per benchmark target. Artifacts dispatch through runtimes.registry (any backend it
knows, present or future, with no change here); the PyTorch baselines come from the model source recorded in
an artifact's manifest; peers are the plain tools run the way their docs show. Heavy modules are imported in
load() only, so this module imports in any venv that has numpy (the peer workers' included)."""
from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import TIMINGS

TIMER = "time.perf_counter_ns"
KINDS = ("artifact", "tensorrt", "torch", "ort-default", "ort-qdynamic", "ov-nncf", "optimum-ort", "optimum-ov",
         "optimum-ortq")
MODEL_SUFFIXES = (".onnx", ".onnx.data", ".ort", ".xml", ".bin", ".safetensors", ".engine", ".plan")


@dataclass(frozen=True)
class TargetSpec:
    """One thing benchmarked. JSON-able: it crosses to subprocess workers as is."""
    id: str
    kind: str
    artifact: str  # the artifact dir (torch baselines and peers: the artifact whose source / ONNX they use)
    precision: str | None = None
    compile: bool | str = False  # torch: torch.compile (a str: its mode, e.g. "reduce-overhead" = CUDA graphs)
    device: str = "cpu"
    threads: int | None = None
    launcher: str = "inprocess"  # or "subprocess"
    python: str | None = None  # interpreter of the subprocess worker (peers: .venv-optimum/bin/python)
    timing: str = "auto"  # auto, end-to-end (host->device->host copies timed), device (CUDA events, no copies)
    calibration_size: int = 300  # ov-nncf: train tweets to calibrate on (nncf's default subset size)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TimingMode:
    timer: str
    includes_copies: bool | None  # None: no device, nothing to copy
    sync: bool  # CUDA synchronize / events


def select_timing(device: str, requested: str = "auto", *, device_timer: bool = False) -> TimingMode:
    """CPU: perf_counter_ns around the call. CUDA: 'end-to-end' (default) = perf_counter_ns around copy in, run,
    copy out, with torch.cuda.synchronize(); 'device' = inputs already on the GPU, CUDA events around the forward
    pass only (runners that can: device_timer=True, i.e. the torch baselines)."""
    from runtimes.errors import ConfigError

    if requested not in TIMINGS:
        raise ConfigError(f"unknown timing mode '{requested}'. Expected one of: {', '.join(TIMINGS)}")
    if device == "cpu":
        if requested == "device":
            raise ConfigError("timing mode 'device' (CUDA events, copies excluded) needs --device cuda. "
                              "Fix: omit --timing on CPU")
        return TimingMode(TIMER, None, False)
    if requested == "device":
        if not device_timer:
            raise ConfigError("timing mode 'device' is only implemented for the torch CUDA baselines; runtimes "
                              "take host arrays, so their timing includes copies. Fix: --timing end-to-end")
        return TimingMode("torch.cuda.Event.elapsed_time", False, True)
    return TimingMode(f"{TIMER} + torch.cuda.synchronize()" if device_timer else TIMER, True, device_timer)


def files_size(root: Path, names=None) -> int:
    root = Path(root)
    names = names if names is not None else [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sum((root / n).stat().st_size for n in names if n.endswith(MODEL_SUFFIXES) and (root / n).is_file())


class Runner:
    """load() (heavy) -> input_dims -> call(feed) -> elapsed ns -> describe() -> close()."""

    def __init__(self, spec: TargetSpec):
        self.spec = spec
        self.timing = select_timing(spec.device, spec.timing, device_timer=False)

    def load(self) -> None: ...

    @property
    def input_dims(self) -> dict[str, tuple]:
        from runtimes.artifact import read_manifest

        return {t.name: tuple(t.dims) for t in read_manifest(self.spec.artifact).inputs}

    def prepare(self, feed):
        """Per-feed setup done once, outside the timed region (e.g. a device copy in 'device' timing)."""
        return feed

    def infer(self, feed): ...

    def call(self, feed) -> int:
        t0 = time.perf_counter_ns()
        self.infer(feed)
        return time.perf_counter_ns() - t0

    def describe(self) -> dict:
        return {}

    def model_size_bytes(self) -> int | None:
        return None

    def close(self) -> None: ...


class ArtifactRunner(Runner):
    """Any artifact, through runtimes.registry (Runtime.infer: the feed check is part of what is timed)."""

    def load(self):
        from runtimes.base import RuntimeOptions
        from runtimes.registry import open_runtime

        s = self.spec
        self.runtime = open_runtime(s.artifact, RuntimeOptions(device=s.device, precision=s.precision,
                                                                threads=s.threads))
        self.runtime.load()

    def infer(self, feed):
        return self.runtime.infer(feed)

    def describe(self):
        return self.runtime.describe()

    def model_size_bytes(self):
        return files_size(Path(self.spec.artifact), list(self.runtime.manifest.files))

    def close(self):
        self.runtime.close()


class TensorRtRunner(ArtifactRunner):
    """TensorRT engines: each feed is copied to the GPU once, outside the timed region (device-resident inputs),
    and each call is timed with CUDA events recorded on the engine's stream around its enqueue
    (execute_async_v3, or the CUDA graph replay). Host copies are not timed; the report says so."""

    def __init__(self, spec):
        super().__init__(spec)
        self.timing = TimingMode("torch.cuda.Event.elapsed_time", False, True)

    def load(self):
        from runtimes.base import RuntimeOptions
        from runtimes.registry import open_runtime

        s = self.spec
        self.runtime = open_runtime(s.artifact, RuntimeOptions(device="cuda", precision=s.precision))
        self.runtime.load()
        torch = self.runtime.torch
        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def prepare(self, feed):
        return self.runtime.device_feed(feed)  # (profile, CUDA tensors)

    def call(self, prepared) -> int:
        profile, inputs = prepared
        self.start.record(self.runtime.stream)
        self.runtime.run_device(profile, inputs)
        self.end.record(self.runtime.stream)
        self.end.synchronize()
        return int(self.start.elapsed_time(self.end) * 1e6)

    def describe(self):
        return {**self.runtime.describe(), "inputs": "device-resident (copied once per feed, untimed)",
                "timing": "CUDA events on the engine's stream around the enqueue; host copies excluded"}

    def model_size_bytes(self):
        return self.runtime.manifest.recipe["engine_bytes"]


class TorchRunner(Runner):
    """PyTorch reference from the artifact's recorded source model (same loader and weights check as parity):
    eager fp32, eager bf16 (or fp16 on CUDA), optionally torch.compile."""

    def __init__(self, spec):
        super().__init__(spec)
        self.timing = select_timing(spec.device, spec.timing, device_timer=True)

    def load(self):
        import torch

        from benchmarks.parity.runner import reference_for
        from runtimes.artifact import load_artifact
        from runtimes.errors import BackendUnavailable, ConfigError

        s = self.spec
        precision = s.precision or "fp32"
        allowed = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")}[s.device]
        if precision not in allowed:
            raise ConfigError(f"torch on {s.device} runs {', '.join(allowed)}; '{precision}' was asked for")
        if s.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch", missing=["cuda"], detail="torch.cuda.is_available() is False",
                                     hint="run on a machine with an NVIDIA GPU and a CUDA build of torch")
        if s.threads:
            torch.set_num_threads(s.threads)
        self.torch = torch
        self.artifact = load_artifact(s.artifact, verify=False)
        loaded = reference_for(self.artifact.manifest)
        self.source = loaded.name
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        model = loaded.model.to(device=s.device, dtype=dtype).eval()
        self.param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        mode = s.compile if isinstance(s.compile, str) else None
        self.model = torch.compile(model, mode=mode) if s.compile else model
        self.outputs = [t.name for t in self.artifact.manifest.outputs]
        if self.timing.sync:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.reset_peak_memory_stats()

    def prepare(self, feed):
        if self.timing.includes_copies is False:  # device timing: copy once, outside the timed region
            return {k: self.torch.from_numpy(v).to(self.spec.device) for k, v in feed.items()}
        return feed

    def infer(self, feed):
        from runtimes.base import check_feed

        torch = self.torch
        check_feed(self.artifact, feed)
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v).to(self.spec.device) for k, v in feed.items()})
        return {n: out[n].float().cpu().numpy() for n in self.outputs}

    def call(self, feed) -> int:
        torch = self.torch
        if self.timing.includes_copies is False:
            with torch.inference_mode():
                self.start.record()
                self.model(**feed)
                self.end.record()
            torch.cuda.synchronize()
            return int(self.start.elapsed_time(self.end) * 1e6)
        t0 = time.perf_counter_ns()
        self.infer(feed)
        if self.timing.sync:
            torch.cuda.synchronize()
        return time.perf_counter_ns() - t0

    def describe(self):
        torch = self.torch
        d = {"backend": "torch", "source": self.source, "precision": self.spec.precision or "fp32",
             "compile": self.spec.compile, "torch": torch.__version__, "threads": torch.get_num_threads(),
             "interop_threads": torch.get_num_interop_threads(), "attn_implementation": "eager"}
        if self.spec.device == "cuda":
            d.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda)
        return d

    def model_size_bytes(self):
        return self.param_bytes  # in-memory parameters at the run precision (no file of its own)

    def gpu_peak_bytes(self):
        return self.torch.cuda.max_memory_allocated() if self.spec.device == "cuda" else None

    def close(self):
        del self.model


def _type_name(t) -> str:
    """An ov.Type as OpenVINO names it ('f32', 'bf16')."""
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


class OrtDefaultRunner(Runner):
    """Peer: plain ONNX Runtime, default SessionOptions, on the artifact's plain exported fp32 model.onnx."""

    def load(self):
        import onnxruntime as ort

        self.ort = ort
        self.path = Path(self.spec.artifact) / "model.onnx"
        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]

    def infer(self, feed):
        return self.session.run(self.names, feed)

    def describe(self):
        return {"backend": "onnxruntime (defaults)", "onnxruntime": self.ort.__version__,
                "providers": self.session.get_providers(), "session_options": "default"}

    def model_size_bytes(self):
        return self.path.stat().st_size

    def close(self):
        del self.session


@functools.lru_cache(maxsize=8)
def _sha16(path: str, mtime_ns: int, size: int) -> str:
    from runtimes.artifact import sha256_file

    return sha256_file(Path(path))[:16]


def peer_cache(kind: str, src: Path, *extra) -> Path:
    """Where a peer keeps the model it derives from `src` (DISTILBERT_DEPLOY_CACHE/bench), keyed by the source hash
    (hashed once per file version in a process)."""
    from runtimes.artifact import cache_root

    st = Path(src).stat()
    return cache_root() / "bench" / "-".join([kind, _sha16(str(src), st.st_mtime_ns, st.st_size), *map(str, extra)])


class OrtQDynamicRunner(OrtDefaultRunner):
    """Peer: the one-line INT8 recipe, onnxruntime.quantization.quantize_dynamic(model.onnx, out,
    weight_type=QInt8) with no other option, in a default-options session. Cached per source model."""

    def load(self):
        import onnxruntime as ort

        src = Path(self.spec.artifact) / "model.onnx"
        path = peer_cache("ort-qdynamic", src) / "model.onnx"
        if not path.is_file():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{os.getpid()}.onnx")
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
            os.replace(tmp, path)
        self.ort, self.path = ort, path
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]

    def describe(self):
        return {**super().describe(), "backend": "onnxruntime quantize_dynamic(weight_type=QInt8), defaults"}


def calibration_feeds(artifact: Path, size: int) -> list[dict[str, np.ndarray]]:
    """The first `size` train tweets (never held-out ones), one per feed, each padded to its own length."""
    from exporters.tweets import split
    from runtimes.tasks.encoding import load_tokenizer

    tok = load_tokenizer(artifact)
    train, _ = split()
    feeds = []
    for t in train[:size]:
        enc = tok(t.text, truncation=True, max_length=128, return_tensors="np")
        feeds.append({"input_ids": enc["input_ids"].astype(np.int64),
                      "attention_mask": enc["attention_mask"].astype(np.int64)})
    return feeds


class OvNncfRunner(Runner):
    """Peer: plain OpenVINO with nncf.quantize defaults: ov.convert_model(fp32 ONNX), nncf.quantize(model,
    nncf.Dataset(calibration)) and nothing else, compiled for CPU with default properties. The quantized model
    is cached (DISTILBERT_DEPLOY_CACHE/bench) so repeated runs do not recalibrate."""

    def load(self):
        import openvino as ov

        src = Path(self.spec.artifact) / "model.onnx"
        cache = peer_cache("ov-nncf", src, self.spec.calibration_size) / "model.xml"
        if not cache.is_file():
            import nncf

            model = ov.convert_model(str(src))
            q = nncf.quantize(model, nncf.Dataset(calibration_feeds(Path(self.spec.artifact),
                                                                     self.spec.calibration_size)))
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".tmp-{os.getpid()}.xml")
            ov.save_model(q, str(tmp))
            os.replace(tmp.with_suffix(".bin"), cache.with_suffix(".bin"))
            os.replace(tmp, cache)
        self.path = cache
        self.ov = ov
        self.compiled = ov.Core().compile_model(str(cache), "CPU")
        self.request = self.compiled.create_infer_request()

    def infer(self, feed):
        return self.request.infer(feed)

    def describe(self):
        return {"backend": "openvino + nncf.quantize (defaults)", "openvino": self.ov.get_version(),
                "calibration": f"{self.spec.calibration_size} train tweets",
                "inference_precision": _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
                "threads": self.compiled.get_property("INFERENCE_NUM_THREADS")}

    def model_size_bytes(self):
        return self.path.stat().st_size + self.path.with_suffix(".bin").stat().st_size

    def close(self):
        del self.request, self.compiled


OPTIMUM_CLASSES = {  # task -> class name suffix (ORTModelFor... / OVModelFor...)
    "text-classification": "SequenceClassification", "token-classification": "TokenClassification",
    "question-answering": "QuestionAnswering", "fill-mask": "MaskedLM", "feature-extraction": "FeatureExtraction",
    "multiple-choice": "MultipleChoice",
}


class OptimumRunner(Runner):
    """Peers: optimum's ORTModelFor<Task> and optimum-intel's OVModelFor<Task> on the artifact's model.onnx,
    config.json and tokenizer files. Runs in its own venv (.venv-optimum) through the subprocess launcher;
    needs nothing of this project but what is on PYTHONPATH."""

    def load(self):
        import json

        path = Path(self.spec.artifact)
        manifest = json.loads((path / "manifest.json").read_text())
        self.task = manifest["task"]
        self._dims = {t["name"]: tuple(t["dims"]) for t in manifest["inputs"]}
        suffix = OPTIMUM_CLASSES[self.task]
        if self.spec.kind == "optimum-ort":
            import optimum.onnxruntime as mod

            cls = getattr(mod, f"ORTModelFor{suffix}")
            self.model = cls.from_pretrained(path, file_name="model.onnx", provider="CPUExecutionProvider")
        elif self.spec.kind == "optimum-ortq":
            import optimum.onnxruntime as mod

            qdir, self.preset = self._quantized(path, mod)
            self.qdir = qdir
            cls = getattr(mod, f"ORTModelFor{suffix}")
            self.model = cls.from_pretrained(qdir, file_name="model_quantized.onnx", provider="CPUExecutionProvider")
        else:
            import optimum.intel as mod

            cls = getattr(mod, f"OVModelFor{suffix}")
            self.model = cls.from_pretrained(path, from_onnx=True, file_name="model.onnx", export=False, compile=True)
        import torch

        self.torch = torch

    @staticmethod
    def _quantized(path: Path, mod) -> tuple[Path, str]:
        """optimum's ORTQuantizer with the AutoQuantizationConfig preset for this CPU (dynamic: no calibration),
        cached per source model: the one `--target auto` picks for ONNX Runtime (arm64, avx512_vnni or avx2)."""
        import shutil

        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        from quantization.auto_target import choose

        preset = choose("onnxruntime", "dynamic", "auto")["picked"].replace("-", "_")  # avx512_vnni, avx2, arm64
        qdir = peer_cache("optimum-ortq", path / "model.onnx", preset)
        if not (qdir / "model_quantized.onnx").is_file():
            tmp = qdir.with_name(f".tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            quantizer = mod.ORTQuantizer.from_pretrained(path, file_name="model.onnx")
            quantizer.quantize(save_dir=tmp, quantization_config=getattr(AutoQuantizationConfig, preset)(
                is_static=False, per_channel=False))
            for f in path.iterdir():  # config and tokenizer files beside the quantized model
                if f.suffix in (".json", ".txt") and f.name != "manifest.json" and not (tmp / f.name).exists():
                    shutil.copy2(f, tmp / f.name)
            shutil.rmtree(qdir, ignore_errors=True)
            os.replace(tmp, qdir)
        return qdir, preset

    @property
    def input_dims(self):
        return self._dims

    def prepare(self, feed):
        return {k: self.torch.from_numpy(v) for k, v in feed.items()}  # as a user feeds it (return_tensors="pt")

    def infer(self, feed):
        return self.model(**feed)

    def describe(self):
        from runtimes.artifact import library_versions

        versions = library_versions("optimum", "optimum-onnx", "optimum-intel", "transformers", "onnxruntime",
                                    "openvino", "torch")
        d = {"backend": type(self.model).__name__, "versions": versions}
        if self.spec.kind == "optimum-ortq":
            d["quantization"] = f"ORTQuantizer, AutoQuantizationConfig.{self.preset}(is_static=False)"
        compiled = getattr(self.model, "request", None)  # optimum-intel: the compiled model OpenVINO runs
        if compiled is not None and hasattr(compiled, "get_property"):
            try:
                d["inference_precision"] = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
                d["threads"] = compiled.get_property("INFERENCE_NUM_THREADS")
            except Exception:
                pass
        return d

    def model_size_bytes(self):
        return (Path(getattr(self, "qdir", None) or self.spec.artifact) /
                ("model_quantized.onnx" if self.spec.kind == "optimum-ortq" else "model.onnx")).stat().st_size

    def close(self):
        del self.model


RUNNERS = {"artifact": ArtifactRunner, "tensorrt": TensorRtRunner, "torch": TorchRunner, "ort-default": OrtDefaultRunner,
           "ort-qdynamic": OrtQDynamicRunner, "ov-nncf": OvNncfRunner, "optimum-ort": OptimumRunner,
           "optimum-ov": OptimumRunner, "optimum-ortq": OptimumRunner}


def make_runner(spec: TargetSpec) -> Runner:
    from runtimes.errors import ConfigError

    if spec.kind not in RUNNERS:
        raise ConfigError(f"unknown target kind '{spec.kind}'. Expected one of: {', '.join(RUNNERS)}")
    return RUNNERS[spec.kind](spec)
