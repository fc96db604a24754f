"""The trained sentiment head of the built-in `default` text-classifier, shipped in the repository.

Training it (8,000 tweets encoded by the frozen encoder, then 10 epochs on their [CLS] features) took 320 s on a
2-core AVX2 machine, the largest cost of a fresh `make demo`; the head itself is pre_classifier (384x384) and
classifier (3x384), 0.6 MB. `python -m sources.default_head` retrains it (sources.builtin_models) and rewrites
default_head.safetensors and default_head.json; tests/test_models.py (slow) checks that retraining reproduces it."""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
WEIGHTS = HERE / "default_head.safetensors"
NOTES = HERE / "default_head.json"
KEYS = ("pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias")


def available() -> bool:
    return WEIGHTS.is_file() and NOTES.is_file()


def load_into(model) -> dict:
    """Copy the shipped head into a DistilBertForSequenceClassification; returns its provenance notes."""
    from safetensors.torch import load_file

    from runtimes.artifact import sha256_file

    state = load_file(str(WEIGHTS))
    missing = [k for k in KEYS if k not in state]
    own = model.state_dict()
    bad = [k for k in KEYS if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        from runtimes.errors import ModelSourceError

        raise ModelSourceError(f"{WEIGHTS} does not fit the default model (missing {missing}, shape mismatch {bad}). "
                               f"Fix: regenerate it with `python -m sources.default_head`")
    model.load_state_dict({k: state[k] for k in KEYS}, strict=False)
    notes = json.loads(NOTES.read_text())
    return {**notes, "head_file": f"sources/{WEIGHTS.name} (sha256 {sha256_file(WEIGHTS)[:16]})"}


def save(model, notes: dict, weights: Path = WEIGHTS, notes_path: Path = NOTES) -> None:
    from safetensors.torch import save_file

    from runtimes.artifact import write_text_atomic

    sd = model.state_dict()
    tmp = weights.with_name(f".{weights.name}.tmp")
    save_file({k: sd[k].detach().clone().contiguous() for k in KEYS}, str(tmp))
    tmp.replace(weights)
    write_text_atomic(notes_path, json.dumps(notes, indent=2) + "\n")


def retrain():
    """(model with a freshly trained head, its notes): exactly what a build without the shipped head does."""
    from . import builtin_models

    return builtin_models.build_default_classifier(train=True)


def main() -> int:
    model, notes = retrain()
    save(model, notes)
    print(f"wrote {WEIGHTS} and {NOTES}: held-out accuracy {notes['heldout_accuracy']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
