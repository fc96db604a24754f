"""Model sources: built-ins (tiny, base-random, default), local directories, hub ids, errors."""
from __future__ import annotations

import subprocess
import sys

import pytest

from runtimes.errors import ConfigError, ModelSourceError
from runtimes.heads import HEADS, TASKS

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I just don't trust my life in Google's hands. #driverless cars, no thank you",
    "Self-driving cars could make our roads far safer, and I can't wait to ride in one!",
    "Hi.",
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILBERT_DEPLOY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-cache")


@pytest.fixture(scope="session")
def default_cache():
    """The session's model cache (DISTILBERT_DEPLOY_CACHE): the default model is built once for every test."""
    from runtimes.artifact import cache_root

    return cache_root()


def _load(source, task, cache_dir):
    from sources.models import load_model

    return load_model(source, task, cache_dir=cache_dir)


def _same_state(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_import_pulls_in_no_torch():
    code = "import sys, sources.models, sources.tweets; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_cache_root_follows_env(monkeypatch, tmp_path):
    from sources.models import cache_root

    monkeypatch.setenv("DISTILBERT_DEPLOY_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("DISTILBERT_DEPLOY_CACHE")
    assert cache_root().name == "distilbert-deploy"


# ---------------------------------------------------------------- conversion of the real weights

def test_conversion_matches_bert_exactly():
    torch = pytest.importorskip("torch")
    from transformers import BertModel

    from sources import minilm

    tok = minilm.build_tokenizer()
    ours = minilm.convert()
    bert = BertModel.from_pretrained(minilm.model_dir(), attn_implementation="eager", add_pooling_layer=False).eval()
    assert ours.config.dim == 384 and ours.config.n_layers == 6 and ours.config.n_heads == 12
    assert ours.config.hidden_dim == 1536 and ours.config._attn_implementation == "eager"
    worst = 0.0
    for batch in ([SENTENCES[0]], SENTENCES):  # one unpadded, one padded batch
        enc = tok(batch, padding=True, return_tensors="pt")
        with torch.no_grad():
            a = ours(**enc).last_hidden_state
            b = bert(**enc, token_type_ids=torch.zeros_like(enc["input_ids"])).last_hidden_state
        mask = enc["attention_mask"].bool()
        worst = max(worst, float((a - b).abs()[mask].max()))
    print(f"conversion max abs diff: {worst:.3g}")
    assert worst < 1e-5
    assert minilm.conversion_max_diff(ours, tok) < 1e-5


def test_default_encoder_is_the_converted_model(default_cache):
    m = _load("default", "feature-extraction", default_cache)
    assert type(m.model).__name__ == "DistilBertModel" and m.labels is None
    assert m.source["kind"] == "builtin" and m.source["origin"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert m.source["conversion_max_abs_diff"] < 1e-5 and len(m.source["sha256"]) == 64


# ---------------------------------------------------------------- tokenizer

def test_vocab_is_real_bert_base_uncased(tiny_cache):
    tok = _load("tiny", "feature-extraction", tiny_cache).tokenizer
    assert tok.is_fast and len(tok) == 30522 and tok.model_max_length == 512
    assert (tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.pad_token_id) == (101, 102, 103, 0)
    assert tok("Hello WORLD")["input_ids"] == tok("hello world")["input_ids"] == [101, 7592, 2088, 102]
    assert "token_type_ids" not in tok("hello")
    assert len(tok("word " * 600, truncation=True)["input_ids"]) == 512  # no 128 cap from sentence-transformers


# ---------------------------------------------------------------- built-ins: determinism and cache

def _no_network(monkeypatch) -> list:
    """Every name lookup and socket connection this process attempts fails at once and is recorded: a test asserts
    that nothing was attempted instead of timing the call (a network retry is then a failure on any machine, not a
    slow pass)."""
    import socket

    tried = []

    def refuse(what):
        def call(*args, **kwargs):
            tried.append((what, args[1] if what == "connect" else args[0]))
            raise OSError(f"no network in this test ({what} {tried[-1][1]!r})")

        return call

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    return tried


def test_tiny_is_small_local_deterministic_and_cached(tmp_path, monkeypatch):
    """tiny is cheap by construction (a 2-layer, 32-wide encoder built here, no download), the same twice, and
    loaded from the cache afterwards without a rebuild. No build time is asserted: that is the machine's."""
    from sources import builtin_models

    tried = _no_network(monkeypatch)
    a = _load("tiny", "text-classification", tmp_path / "a")
    b = _load("tiny", "text-classification", tmp_path / "b")
    cfg = a.model.config
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.hidden_dim) == (32, 2, 2, 37) and tried == []
    assert _same_state(a.model, b.model)
    assert a.source["sha256"] == b.source["sha256"]
    assert not list((tmp_path / "a" / "models" / "tiny").glob(".*"))  # no temp folders left behind

    def no_build(*args, **kwargs):
        raise AssertionError("cached model was rebuilt")

    monkeypatch.setattr(builtin_models, "_build", no_build)
    c = _load("tiny", "text-classification", tmp_path / "a")  # from the cache: a rebuild raises above
    assert _same_state(a.model, c.model) and c.source == a.source and c.labels == a.labels and tried == []


def test_env_cache_is_used(cache):
    _load("tiny", "feature-extraction", None)
    assert (cache / "models" / "tiny" / "feature-extraction" / "model_source.json").is_file()


@pytest.mark.parametrize("task", TASKS)
def test_every_task_loads_on_tiny(task, tiny_cache):
    torch = pytest.importorskip("torch")
    from sources.models import NER_LABELS, SENTIMENT_LABELS

    m = _load("tiny", task, tiny_cache)
    assert type(m.model).__name__ == HEADS[task].model_class and m.task == task and m.name == "tiny"
    assert not m.model.training and m.model.dtype == torch.float32
    assert m.model.config._attn_implementation == "eager"
    assert m.model.config.dim == 32 and m.model.config.n_layers == 2 and m.model.config.vocab_size == 30522
    expected = {"text-classification": SENTIMENT_LABELS, "token-classification": NER_LABELS}.get(task)
    assert m.labels == expected
    if expected:
        assert [m.model.config.id2label[i] for i in range(len(expected))] == list(expected)
        assert m.model.config.label2id == {lab: i for i, lab in enumerate(expected)}
    enc = m.tokenizer(["hello world", "a longer sentence here"], padding=True, return_tensors="pt")
    if HEADS[task].multiple_choice:
        enc = {k: v.unsqueeze(0) for k, v in enc.items()}  # batch 1 x 2 choices
    with torch.no_grad():
        out = m.model(**enc)
    assert all(torch.isfinite(out[name]).all() for name in HEADS[task].outputs)
    if task == "fill-mask":
        assert m.model.vocab_projector.weight is m.model.distilbert.embeddings.word_embeddings.weight


def test_heads_share_the_cached_encoder(tiny_cache):
    enc = _load("tiny", "feature-extraction", tiny_cache).model
    qa = _load("tiny", "question-answering", tiny_cache).model
    assert _same_state(enc, qa.distilbert)


def test_pipeline_shows_label_names(tiny_cache):
    pytest.importorskip("torch")
    from transformers import pipeline

    m = _load("tiny", "text-classification", tiny_cache)
    out = pipeline("text-classification", model=m.model, tokenizer=m.tokenizer)("hello")
    assert out[0]["label"] in ("negative", "neutral", "positive")


@pytest.mark.slow
def test_base_random_has_base_size(tmp_path):
    m = _load("base-random", "feature-extraction", tmp_path)
    c = m.model.config
    assert (c.dim, c.n_layers, c.n_heads, c.hidden_dim, c.vocab_size) == (768, 6, 12, 3072, 30522)
    assert 66e6 < sum(p.numel() for p in m.model.parameters()) < 67e6


def test_unknown_task_is_a_config_error(tiny_cache):
    with pytest.raises(ConfigError, match="unknown task"):
        _load("tiny", "summarization", tiny_cache)


# ---------------------------------------------------------------- local directories

def test_local_directory_round_trip(tmp_path, tiny_cache):
    src = _load("tiny", "token-classification", tiny_cache)
    d = tmp_path / "ckpt"
    src.model.save_pretrained(d)
    src.tokenizer.save_pretrained(d)
    m = _load(str(d), "token-classification", None)
    assert _same_state(src.model, m.model) and m.labels == src.labels and m.name == str(d)
    assert m.source["kind"] == "local" and m.source["path"] == str(d.resolve())
    assert m.source["sha256"] == src.source["sha256"] and "random_weights" not in m.source
    assert m.model.config._attn_implementation == "eager" and not m.model.training


def test_local_base_model_gets_a_seeded_random_head(tmp_path, tiny_cache):
    src = _load("tiny", "feature-extraction", tiny_cache)
    d = tmp_path / "base"
    src.model.save_pretrained(d)
    src.tokenizer.save_pretrained(d)
    a = _load(str(d), "question-answering", None)
    b = _load(str(d), "question-answering", None)
    assert _same_state(a.model, b.model)
    assert a.source["random_weights"] == ["qa_outputs.bias", "qa_outputs.weight"]
    assert _same_state(src.model, a.model.distilbert)


def test_local_directory_without_tokenizer(tmp_path, tiny_cache):
    d = tmp_path / "no-tok"
    _load("tiny", "feature-extraction", tiny_cache).model.save_pretrained(d)
    with pytest.raises(ModelSourceError, match="tokenizer"):
        _load(str(d), "feature-extraction", None)


def test_local_non_distilbert_is_refused(tmp_path):
    pytest.importorskip("torch")
    from transformers import BertConfig, BertModel

    d = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)).save_pretrained(d)
    with pytest.raises(ModelSourceError, match="only DistilBERT"):
        _load(str(d), "feature-extraction", None)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelSourceError, match="no config.json"):
        _load(str(tmp_path), "feature-extraction", None)


@pytest.mark.parametrize("path", ["/nonexistent/model", "./no-such-model", "~/no-such-model-xyz", "a/b/c"])
def test_missing_path(path):
    with pytest.raises(ModelSourceError, match="does not exist") as e:
        _load(path, "text-classification", None)
    assert "Fix:" in str(e.value) and path in str(e.value)


def test_existing_file_is_not_a_model(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"")
    with pytest.raises(ModelSourceError, match="is a file"):
        _load(str(f), "text-classification", None)


# ---------------------------------------------------------------- hub ids

@pytest.mark.parametrize("repo", ["distilbert-base-uncased", "distilbert-deploy-tests/not-a-cached-model"])
def test_hub_offline_names_the_fix(repo, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    if isinstance(hub.try_to_load_from_cache(repo, "config.json"), str):
        pytest.skip(f"{repo} is in the local hub cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)  # read once at import time
    tried = _no_network(monkeypatch)
    with pytest.raises(ModelSourceError) as e:
        _load(repo, "text-classification", None)
    msg = str(e.value)
    assert f"cannot load '{repo}' from the Hugging Face Hub" in msg and "offline" in msg
    assert "Fix:" in msg and "--model" in msg and "tiny, base-random, default" in msg
    assert tried == []  # no network attempt at all, so no retries (asserted, not timed)


def test_hub_id_served_from_the_local_hub_cache_offline(tmp_path, tiny_cache):
    """A hub id that is in the hub cache loads offline, with the snapshot revision as provenance."""
    import json

    loaded = _load("tiny", "text-classification", tiny_cache)
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--tiny-distilbert"
    snapshot = repo / "snapshots" / revision
    loaded.model.save_pretrained(snapshot)
    loaded.tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    code = ("import json; from sources.models import load_model; "
            "m = load_model('someorg/tiny-distilbert', 'text-classification'); "
            "print(json.dumps({'source': m.source, 'labels': m.labels}))")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["source"] == {"kind": "hub", "id": "someorg/tiny-distilbert", "revision": revision}
    assert tuple(got["labels"]) == loaded.labels


# ---------------------------------------------------------------- tweets and the default sentiment head

def test_tweet_split_is_disjoint_and_stable():
    from sources import tweets

    train, held = tweets.split()
    assert len(held) == tweets.HELDOUT_SIZE and len(train) + len(held) == len(tweets.load_tweets()) > 35000
    assert not {t.id for t in train} & {t.id for t in held}
    assert not {t.text for t in train} & {t.text for t in held}
    assert tweets.split() == (train, held) and tweets.heldout_ids() == tuple(t.id for t in held)
    assert {t.label for t in held} == set(tweets.LABELS)
    assert all(t.text.isascii() and t.text for t in held)
    assert tweets.split(seed=1)[1] != held  # the seed matters
    assert tweets.majority_baseline(train, held) < 0.5


@pytest.mark.slow
def test_default_sentiment_head_beats_majority(default_cache):
    torch = pytest.importorskip("torch")
    from sources import tweets

    m = _load("default", "text-classification", default_cache)
    s = m.source
    print({k: s[k] for k in ("train_size", "heldout_size", "train_accuracy", "heldout_accuracy", "majority_baseline")})
    assert m.labels == tweets.LABELS and s["heldout_size"] == tweets.HELDOUT_SIZE and s["train_size"] >= 2000
    assert s["heldout_accuracy"] > s["majority_baseline"] + 0.2
    # re-score end to end through the loaded (cached) model: the recorded number is real
    _, held = tweets.split()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(held), 128):
            batch = held[i:i + 128]
            enc = m.tokenizer([t.text for t in batch], padding=True, truncation=True, return_tensors="pt")
            pred = m.model(**enc).logits.argmax(-1).tolist()
            correct += sum(p == t.label_id for p, t in zip(pred, batch))
    assert abs(correct / len(held) - s["heldout_accuracy"]) < 0.005


@pytest.mark.slow
def test_retraining_reproduces_the_shipped_head(tmp_path):
    """sources/default_head.safetensors is what training produces: retrained here (8,000 tweets encoded, 10
    epochs; minutes), the head answers the 2,000 held-out tweets as the shipped one does (labels agree on >= 97%)
    and scores the same held-out accuracy within 1 point.

    Not judged in weight space: the trajectory of 10 AdamW epochs amplifies float noise in the frozen features. On
    the machine that trained it retraining was bit-exact; on a 2-core AMD EPYC Zen 5 (2026-12-02) it gave
    pre_classifier.weight 5.4% away (relative Frobenius) from the shipped head, and so did, on that same machine, the
    same features perturbed by 1e-6 relative noise (4.4% from the unperturbed retrain; bias 7.3%). The answers held:
    98.5% held-out label agreement with the shipped head (99.1% between the two retrains there), accuracy 0.7395
    against the shipped 0.74."""
    import json

    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from sources import default_head, minilm, tweets
    from sources.builtin_models import _cls_features, build_default_classifier

    shipped = load_file(str(default_head.WEIGHTS))
    notes = json.loads(default_head.NOTES.read_text())
    model, fresh = build_default_classifier(train=True, root=tmp_path)
    state = model.state_dict()
    _, held = tweets.split()
    x = _cls_features(model.distilbert, minilm.build_tokenizer(), held, "encoding held-out tweets")

    def labels(head):  # DistilBertForSequenceClassification's head, dropout off
        hidden = torch.relu(x @ head["pre_classifier.weight"].T + head["pre_classifier.bias"])
        return (hidden @ head["classifier.weight"].T + head["classifier.bias"]).argmax(-1)

    agreement = float((labels(state) == labels(shipped)).float().mean())
    assert agreement >= 0.97, agreement
    assert abs(fresh["heldout_accuracy"] - notes["heldout_accuracy"]) <= 0.01
    assert fresh["train_size"] == notes["train_size"] and fresh["epochs"] == notes["epochs"]
