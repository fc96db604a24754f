"""Model sources: built-in models (offline, seeded, cached; built by builtin_models.py), local save_pretrained
directories and Hugging Face Hub ids. `load_model(source, task)` returns the head model for a task in eval mode,
fp32, with eager attention (ORT's optimizer can only fuse attention from the eager graph)."""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtimes.artifact import cache_root, sha256_file
from runtimes.errors import ModelSourceError
from runtimes.heads import HeadSpec, get_head

from . import tweets

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

BUILTINS: tuple[str, ...] = ("tiny", "base-random", "default")
SENTIMENT_LABELS: tuple[str, ...] = tweets.LABELS
NER_LABELS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
LABELED_TASKS = {"text-classification": SENTIMENT_LABELS, "token-classification": NER_LABELS}
SEED = 0  # every random weight (encoders of tiny/base-random, untrained heads) starts from it
META_FILE = "model_source.json"
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")
FIX = "Fix: pass a local save_pretrained directory (--model /path/to/dir) or a built-in model (tiny, base-random, default)"


@dataclass(frozen=True)
class LoadedModel:
    name: str  # built-in name, hub id, or local path as given
    task: str
    model: "torch.nn.Module"  # the head model for `task`: eval(), fp32, eager attention
    tokenizer: "PreTrainedTokenizerFast"
    labels: tuple[str, ...] | None  # id2label in index order for classification tasks, else None
    source: dict  # JSON-able provenance: kind, id, sha256 or revision, notes


def load_model(source: str, task: str, *, cache_dir: Path | None = None) -> LoadedModel:
    spec = get_head(task)
    if source in BUILTINS:
        from .builtin_models import load_builtin

        return load_builtin(source, spec, Path(cache_dir) if cache_dir else cache_root())
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_pretrained(source, spec, path)
    if path.exists():
        raise ModelSourceError(f"model path '{source}' is a file, expected a save_pretrained directory "
                               f"(with config.json). {FIX}")
    if _looks_like_path(source, path):
        raise ModelSourceError(f"model path '{source}' does not exist. {FIX}, or a Hugging Face Hub id "
                               f"such as 'distilbert-base-uncased'")
    return _load_pretrained(source, spec, None)


def _looks_like_path(source: str, path: Path) -> bool:
    return (source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source
            or (path.parent != Path(".") and path.parent.exists()))


# ---------------------------------------------------------------- local directories and hub ids

def _load_pretrained(name: str, spec: HeadSpec, path: Path | None) -> LoadedModel:
    import torch
    import transformers

    local = path is not None
    offline = not local and _hub_offline()
    where = str(path.resolve()) if local else name
    if local and not (path / "config.json").is_file():
        raise ModelSourceError(f"'{name}' is not a save_pretrained directory: no config.json in {where}. {FIX}")
    try:
        kw = {} if local else {"local_files_only": offline}
        cfg = transformers.AutoConfig.from_pretrained(where, **kw)
        if cfg.model_type != "distilbert":
            raise ModelSourceError(f"'{name}' is a '{cfg.model_type}' model; only DistilBERT checkpoints "
                                   f"(model_type 'distilbert') are supported. {FIX}")
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, **kw)
        torch.manual_seed(SEED)  # a head missing from the checkpoint is random: make it reproducible
        model, info = getattr(transformers, spec.model_class).from_pretrained(
            where, attn_implementation="eager", output_loading_info=True, **kw)
    except (OSError, ValueError, KeyError) as e:
        if local:
            raise ModelSourceError(f"cannot read the checkpoint in {where}: {_first_line(e)}") from e
        why = ("offline (HF_HUB_OFFLINE=1) and not in the local cache" if offline
               else f"not reachable or not found ({_first_line(e)})")
        raise ModelSourceError(f"cannot load '{name}' from the Hugging Face Hub: {why}. {FIX}") from e
    _check_tokenizer(name, tokenizer, cfg)
    source = ({"kind": "local", "path": where, **_weights_hash(path)} if local
              else {"kind": "hub", "id": name, "revision": _hub_revision(name)})
    if info.get("missing_keys"):
        source["random_weights"] = sorted(info["missing_keys"])
        source["notes"] = f"weights missing from the checkpoint were initialised randomly (seed {SEED})"
    return LoadedModel(name, spec.task, model.float().eval(), tokenizer, _labels(model.config, spec.task), source)


def _hub_offline() -> bool:
    env = any(os.environ.get(k, "").strip().upper() in ("1", "ON", "YES", "TRUE")
              for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    try:
        from huggingface_hub import constants
    except ImportError:
        return env
    return env or bool(constants.HF_HUB_OFFLINE)


def _hub_revision(repo_id: str) -> str | None:
    """The commit the files came from: the snapshot folder name in the hub cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # provenance is best effort; the model itself has loaded
        return None
    return Path(hit).parent.name if isinstance(hit, str) and Path(hit).parent.parent.name == "snapshots" else None


def _check_tokenizer(name: str, tokenizer, cfg) -> None:
    # transformers builds a 5-token tokenizer when the files are missing: refuse it
    n = len(tokenizer)
    if not getattr(tokenizer, "is_fast", False) or n > cfg.vocab_size or n < cfg.vocab_size // 2:
        raise ModelSourceError(
            f"'{name}' has no usable fast tokenizer (got {type(tokenizer).__name__} with {n} tokens, the model's "
            f"vocabulary has {cfg.vocab_size}). Fix: save the tokenizer next to the weights "
            f"(tokenizer.save_pretrained(dir), which writes tokenizer.json)")


def _weights_hash(path: Path) -> dict:
    files = sorted({f for pat in WEIGHT_FILES for f in path.glob(pat)})
    hashes = {f.name: sha256_file(f) for f in files}
    if len(hashes) == 1:
        return {"sha256": next(iter(hashes.values())), "files": list(hashes)}
    combined = hashlib.sha256("".join(f"{n}:{h}\n" for n, h in hashes.items()).encode()).hexdigest()
    return {"sha256": combined, "files": list(hashes)}


def _labels(config, task: str) -> tuple[str, ...] | None:
    if task not in LABELED_TASKS:
        return None
    return tuple(str(config.id2label[i]) for i in range(config.num_labels))


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


# ---------------------------------------------------------------- progress and quiet loading (stderr)

@contextlib.contextmanager
def progress_bar(desc: str, total: int | None):
    """A rich progress bar on stderr (a spinner when total is None); yields step(n=1)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    cols = [SpinnerColumn(), TextColumn("{task.description}"),
            *((BarColumn(), MofNCompleteColumn()) if total else ()), TimeElapsedColumn()]
    with Progress(*cols, console=Console(stderr=True)) as progress:
        task = progress.add_task(desc, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextlib.contextmanager
def spinner(desc: str):
    with progress_bar(desc, None):
        yield


@contextlib.contextmanager
def quiet_loading():
    """Silence transformers' load reports and bars for our own, known-complete checkpoints."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
