"""PyTorch DistilBERT head -> ONNX artifact (and the PyTorch reference artifact).

Exports the eager-attention graph (ORT's transformer optimizer cannot fuse the SDPA one),
reports the fusions the optimizer finds, and validates against PyTorch on shapes other than
the export shape, with padded rows. A miss beyond tolerance fails the export."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtimes.artifact import Manifest, finalize, library_versions, staging_dir
from runtimes.errors import ConfigError, ExportError
from runtimes.heads import HeadSpec, get_head
from runtimes.progress import step

BACKENDS = ("onnxruntime", "torch")
EXPORT_SHAPE = {"batch": 2, "num_choices": 2, "sequence": 16}
# (batch, num_choices, sequence lengths per row): unseen at export, padded rows included.
VALIDATION_CASES = (
    (1, 3, (9,)),
    (3, 4, (37, 20, 5)),
    (5, 2, (128, 64, 1, 100, 17)),
)
VERSIONED = ("torch", "transformers", "tokenizers", "onnx", "onnxruntime")


@dataclass(frozen=True)
class ExportConfig:
    model: str
    task: str
    out: Path
    backend: str = "onnxruntime"
    opset: int = 17
    atol: float = 1e-4
    rtol: float = 1e-4
    max_batch: int = 64
    max_choices: int = 8
    cls_pruning: bool = False  # last layer computes only [CLS] (exporters/cls_pruning.py); CLS-reading heads only

    def __post_init__(self):
        get_head(self.task)
        if self.backend not in BACKENDS:
            raise ConfigError(f"cannot export to backend '{self.backend}'. Expected one of: {', '.join(BACKENDS)}")
        if self.cls_pruning:
            from .cls_pruning import check_task

            check_task(self.task)
            if self.backend != "onnxruntime":
                raise ConfigError("--cls-pruning is an ONNX graph optimization; the torch artifact is the unpruned "
                                  "reference. Fix: drop --cls-pruning or use --backend onnxruntime")
        if not 14 <= self.opset <= 21:
            raise ConfigError(f"opset {self.opset} is out of range; expected 14..21 (default 17)")
        if self.max_batch < 1 or self.max_choices < 1:
            raise ConfigError("max_batch and max_choices must be >= 1")


def export(cfg: ExportConfig) -> Manifest:
    """Build the artifact for `cfg` at cfg.out, atomically. Returns its manifest."""
    from sources.models import load_model

    with step(f"load model '{cfg.model}' for {cfg.task}"):
        loaded = load_model(cfg.model, cfg.task)
    head = get_head(cfg.task)
    config = loaded.model.config
    base = dict(
        task=cfg.task, backend=cfg.backend, precision="fp32", labels=loaded.labels,
        inputs=head.input_specs(),
        outputs=head.output_specs(hidden=config.dim, num_labels=config.num_labels, vocab=config.vocab_size),
        shape_profile=shape_profile(head, cfg, config.max_position_embeddings),
        source={**loaded.source, "name": loaded.name, "parent": None, **_pooling(cfg)},
        versions=library_versions(*VERSIONED),
    )
    with staging_dir(cfg.out) as tmp:
        loaded.tokenizer.save_pretrained(tmp)
        if cfg.backend == "torch":
            with step("save PyTorch reference checkpoint"):
                loaded.model.save_pretrained(tmp)
            return finalize(tmp, Manifest(**base, model_file="model.safetensors",
                                          recipe={"format": "safetensors", "attn_implementation": "eager"}))
        config.save_pretrained(tmp)
        onnx_path = tmp / "model.onnx"
        graph_model, pruning = loaded.model, None
        if cfg.cls_pruning:
            from .cls_pruning import pruned_copy, saved_flops

            graph_model = pruned_copy(loaded.model, cfg.task)
            pruning = {"last_layer": "[CLS] row only (Q, out_lin, LayerNorms, FFN); attention reassociated, "
                                     "no K/V projection of the tokens (exporters/cls_pruning.py)",
                       "saved_gflop_per_sequence_at_128": round(saved_flops(config, 128) / 1e9, 3),
                       "validated_against": "the unpruned PyTorch model"}
        with step(f"export ONNX (opset {cfg.opset}{', [CLS]-pruned last layer' if pruning else ''})"):
            export_graph(graph_model, head, onnx_path, cfg.opset)
        with step("check graph and find transformer fusions"):
            import onnx

            onnx.checker.check_model(str(onnx_path))
            fusions = fusion_report(onnx_path, config.n_heads, config.dim)
        with step(f"validate against PyTorch on {len(VALIDATION_CASES)} unseen shapes"):
            parity = validate(loaded.model, head, onnx_path, cfg, config.vocab_size)  # unpruned: proves exactness
        recipe = {"format": "onnx", "opset": cfg.opset, "exporter": "torch.onnx.export (TorchScript)",
                  "attn_implementation": "eager", "export_shape": EXPORT_SHAPE, "optimizer_fusions": fusions}
        if pruning:
            recipe["cls_pruning"] = pruning
        return finalize(tmp, Manifest(**base, model_file="model.onnx", recipe=recipe,
                                      parity={"export_validation": parity}))


def _pooling(cfg) -> dict:
    """feature-extraction: the source's sentence-embedding pooling (exporters/pooling.py), when it has one."""
    from .pooling import pooling_of

    found = pooling_of(cfg.model) if cfg.task == "feature-extraction" else None
    return {"pooling": found} if found else {}


def shape_profile(head: HeadSpec, cfg: ExportConfig, max_len: int) -> dict:
    lo = {"batch": 1, "sequence": 1}
    opt = {"batch": 1, "sequence": 128}
    hi = {"batch": cfg.max_batch, "sequence": max_len}
    if head.multiple_choice:
        lo["num_choices"], opt["num_choices"], hi["num_choices"] = 1, 4, cfg.max_choices
    return {"min": lo, "opt": opt, "max": hi}


def export_graph(model, head: HeadSpec, path: Path, opset: int) -> None:
    import warnings

    import torch

    b, c, s = (EXPORT_SHAPE[k] for k in ("batch", "num_choices", "sequence"))
    shape = (b, c, s) if head.multiple_choice else (b, s)
    ids = torch.randint(1000, 2000, shape)
    mask = torch.ones_like(ids)
    axes_in = dict(enumerate((*head.leading_dims, "sequence")))
    dynamic = {"input_ids": axes_in, "attention_mask": axes_in}
    for spec in head.output_specs(hidden=0, num_labels=0, vocab=0):
        dynamic[spec.name] = {i: d for i, d in enumerate(spec.dims) if isinstance(d, str)}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript tracer warnings about python control flow
        torch.onnx.export(model, (ids, mask), str(path), dynamo=False, opset_version=opset,
                          input_names=["input_ids", "attention_mask"], output_names=list(head.outputs),
                          dynamic_axes=dynamic, do_constant_folding=True)


def fusion_report(onnx_path: Path, num_heads: int, hidden: int) -> dict[str, int]:
    """Fusions ORT's transformer optimizer finds in the graph (only those found)."""
    import logging

    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    opt = optimizer.optimize_model(str(onnx_path), model_type="bert", num_heads=num_heads, hidden_size=hidden,
                                   opt_level=0)
    return {k: v for k, v in opt.get_fused_operator_statistics().items() if v}


def validation_feeds(head: HeadSpec, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for batch, choices, lengths in VALIDATION_CASES:
        seq = max(lengths)
        lead = (batch, choices) if head.multiple_choice else (batch,)
        ids = np.zeros((*lead, seq), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, n in enumerate(lengths):
            ids[row, ..., :n] = rng.integers(1000, vocab, size=(*lead[1:], n))
            ids[row, ..., 0], ids[row, ..., n - 1] = 101, 102
            mask[row, ..., :n] = 1
        yield {"input_ids": ids, "attention_mask": mask}


def validate(model, head: HeadSpec, onnx_path: Path, cfg: ExportConfig, vocab: int) -> dict:
    """ORT (CPU) against PyTorch fp32 on every validation case; raise listing every failing output."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst: dict[str, float] = {}
    failures = []
    for feed in validation_feeds(head, vocab):
        with torch.inference_mode():
            ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        got = dict(zip(head.outputs, session.run(list(head.outputs), feed)))
        for name in head.outputs:
            r, g = ref[name].numpy(), got[name]
            if r.shape != g.shape:
                failures.append(f"{name} at input shape {feed['input_ids'].shape}: shape {g.shape} != torch {r.shape}")
                continue
            diff = float(np.max(np.abs(r - g)))
            worst[name] = max(worst.get(name, 0.0), diff)
            if not np.allclose(g, r, atol=cfg.atol, rtol=cfg.rtol):
                failures.append(f"{name} at input shape {feed['input_ids'].shape}: max abs diff {diff:.3g}")
    if failures:
        raise ExportError(f"ONNX export of {cfg.model} ({cfg.task}) does not match PyTorch within atol={cfg.atol}, "
                          f"rtol={cfg.rtol}: " + "; ".join(failures) + ". Nothing was written.")
    return {"passed": True, "reference": "torch fp32 cpu", "runtime": "onnxruntime CPUExecutionProvider",
            "atol": cfg.atol, "rtol": cfg.rtol, "max_abs_diff": worst,
            "shapes": [list(f["input_ids"].shape) for f in validation_feeds(head, vocab)]}
