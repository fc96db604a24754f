"""A sentence-embedding model's pooling, as sentence-transformers saves it (modules.json, 1_Pooling/config.json,
a Normalize module), recorded in feature-extraction artifacts (manifest source.pooling) so that an embeddings API
pools as the model was trained to. Models without those files get no record (the service then documents its
default: mean pooling, L2-normalized)."""
from __future__ import annotations

import json
from pathlib import Path

from runtimes.errors import ModelSourceError

MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


def sentence_pooling(model_dir: Path) -> dict | None:
    """{"mode": "mean"|"cls"|"max", "normalize": bool, "from": ...} from a sentence-transformers directory."""
    modules = Path(model_dir) / "modules.json"
    if not modules.is_file():
        return None
    try:
        mods = json.loads(modules.read_text())
        kinds = {m["type"].rsplit(".", 1)[-1]: m.get("path", "") for m in mods}
        if "Pooling" not in kinds:
            return None
        cfg = json.loads((Path(model_dir) / kinds["Pooling"] / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelSourceError(f"{model_dir}: unreadable sentence-transformers pooling config ({e}). Fix: repair "
                               f"modules.json and its Pooling config.json, or remove modules.json") from None
    modes = [name for key, name in MODES.items() if cfg.get(key)]
    if len(modes) != 1 or any(cfg.get(k) for k in cfg if k.startswith("pooling_mode") and k not in MODES):
        raise ModelSourceError(f"{model_dir}: pooling {sorted(k for k in cfg if cfg.get(k) is True)} is not one of "
                               f"mean, cls or max; the embeddings API cannot reproduce it")
    return {"mode": modes[0], "normalize": "Normalize" in kinds, "from": "sentence-transformers modules.json"}


def pooling_of(source: str) -> dict | None:
    """The pooling of a built-in name or local directory; None when the source records none (hub ids too)."""
    if source == "default":
        from sources.minilm import ORIGIN, model_dir

        found = sentence_pooling(model_dir())
        return found and {**found, "from": f"{ORIGIN} (sentence-transformers modules.json)"}
    path = Path(source).expanduser()
    return sentence_pooling(path) if path.is_dir() else None
