"""token-classification (NER), as transformers' TokenClassificationPipeline, every aggregation strategy."""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError
from .encoding import Job, as_batch, check_text, encode, label_names, softmax

STRATEGIES = ("none", "simple", "first", "average", "max")


def prepare(p, inputs, *, aggregation_strategy: str = "none",
            ignore_labels: list[str] | tuple[str, ...] = ("O",)) -> Job:
    strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
    if strategy not in STRATEGIES:
        raise ConfigError(f"aggregation_strategy='{aggregation_strategy}' is not an option. Expected one of: "
                          f"{', '.join(STRATEGIES)}")
    texts, single = as_batch(inputs)
    texts = [check_text(t, f"input #{i}") for i, t in enumerate(texts)]
    cut: list[int] = []
    encs = encode(p, texts, cut=cut)

    def finish(outs):
        answers = [_entities(p, text, e, out["logits"], strategy, ignore_labels)
                   for text, e, out in zip(texts, encs, outs)]
        return answers[0] if single else answers

    return Job([e.ids for e in encs], finish, truncated=tuple(cut))


def _entities(p, text: str, e, logits: np.ndarray, strategy: str, ignore_labels) -> list[dict]:
    scores = softmax(logits[:len(e.ids)])
    labels = label_names(p, scores.shape[-1])
    tokens = _tokens(p.tokenizer, text, e, scores, strategy)
    if strategy in ("none", "simple"):
        entities = [_token_entity(t, labels) for t in tokens]
    else:
        entities = [_word_entity(p.tokenizer, w, labels, strategy) for w in _words(tokens)]
    if strategy != "none":
        entities = _group(p.tokenizer, entities)
    key = "entity" if strategy == "none" else "entity_group"
    return [x for x in entities if x[key] not in ignore_labels]


def _tokens(tok, text: str, e, scores: np.ndarray, strategy: str) -> list[dict]:
    """The non-special tokens with their scores, character span and whether they continue a word."""
    wordpiece = getattr(tok.backend_tokenizer.model, "continuing_subword_prefix", None)
    if not wordpiece and strategy in ("first", "average", "max"):
        warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning)
    out = []
    for idx, (token, (start, end)) in enumerate(zip(e.tokens, e.offsets)):
        if e.special_tokens_mask[idx]:
            continue
        ref = text[start:end]
        if e.ids[idx] == tok.unk_token_id:
            token, subword = ref, False
        elif wordpiece:
            subword = len(token) != len(ref)  # '##ing' vs 'ing'
        else:
            subword = start > 0 and " " not in text[start - 1:start + 1]
        out.append({"word": token, "scores": scores[idx], "start": start, "end": end, "index": idx,
                    "is_subword": subword})
    return out


def _token_entity(t: dict, labels) -> dict:
    best = int(t["scores"].argmax())
    return {"entity": labels[best], "score": float(t["scores"][best]), "index": t["index"], "word": t["word"],
            "start": t["start"], "end": t["end"]}


def _words(tokens: list[dict]) -> list[list[dict]]:
    words: list[list[dict]] = []
    for t in tokens:
        if words and t["is_subword"]:
            words[-1].append(t)
        else:
            words.append([t])
    return words


def _word_entity(tok, word: list[dict], labels, strategy: str) -> dict:
    """One label per word: its first token's, its most confident token's, or the average over its tokens."""
    if strategy == "first":
        scores = word[0]["scores"]
    elif strategy == "max":
        scores = max(word, key=lambda t: t["scores"].max())["scores"]
    else:
        scores = np.nanmean(np.stack([t["scores"] for t in word]), axis=0)
    best = int(scores.argmax())
    return {"entity": labels[best], "score": float(scores[best]),
            "word": tok.convert_tokens_to_string([t["word"] for t in word]),
            "start": word[0]["start"], "end": word[-1]["end"]}


def _group(tok, entities: list[dict]) -> list[dict]:
    """Merge adjacent entities of one tag: a B- tag (or a tag change) starts a new group."""
    groups: list[list[dict]] = []
    for x in entities:
        bi, tag = _tag(x["entity"])
        if groups and bi != "B" and tag == _tag(groups[-1][-1]["entity"])[1]:
            groups[-1].append(x)
        else:
            groups.append([x])
    return [{"entity_group": g[0]["entity"].split("-", 1)[-1], "score": float(np.nanmean([x["score"] for x in g])),
             "word": tok.convert_tokens_to_string([x["word"] for x in g]), "start": g[0]["start"], "end": g[-1]["end"]}
            for g in groups]


def _tag(label: str) -> tuple[str, str]:
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label  # not B-/I- tagged: a continuation
