"""The peers: the plain public tools a user would pick instead, run the way their docs show, each deriving its
model from the artifact's plain fp32 export (plain ONNX Runtime, plain `quantize_dynamic`, plain `nncf.quantize`,
optimum's ORTModel / OVModel / ORTQuantizer). Derived models are cached by the source's hash (peer_cache)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from .runners import Runner


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
    from sources.tweets import split
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


PEER_RUNNERS = {"ort-default": OrtDefaultRunner, "ort-qdynamic": OrtQDynamicRunner, "ov-nncf": OvNncfRunner,
                "optimum-ort": OptimumRunner, "optimum-ov": OptimumRunner, "optimum-ortq": OptimumRunner}
