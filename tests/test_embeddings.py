"""OpenAI-compatible /v1/embeddings, end to end: a real `distilbert-deploy serve` on 127.0.0.1, talked to by the
`openai` Python client (its default base64 encoding and float), against the task layer's hidden states pooled
in-process. The request parser is tested as the pure function it is."""
from __future__ import annotations

import base64

import numpy as np
import pytest

from runtimes.errors import InputError
from runtimes.serving.rest_embeddings import parse_embeddings
from runtimes.tasks.feature_extraction import DEFAULT_POOLING, pool
from serve_client import Server
from tiny_tasks import SENTENCES

FE, TC = "feature-extraction", "text-classification"


@pytest.fixture(scope="module")
def paths(runtime_of):
    return {t: runtime_of(t, "onnxruntime").artifact.path for t in (FE, TC)}


@pytest.fixture(scope="module")
def hidden(paths):
    """text -> its token vectors from the in-process pipeline over the same artifact."""
    from runtimes.pipeline import load_pipeline

    pipe = load_pipeline(paths[FE])
    yield lambda text: np.asarray(pipe(text)[0], dtype=np.float32)
    pipe.runtime.close()


@pytest.fixture(scope="module")
def server(paths, tmp_path_factory):
    srv = Server([paths[FE], paths[TC], "--name", FE, "--name", TC, "--max-request-items", "8",
                  "--api-key-env", "DD_EMB_KEY"], tmp_path_factory.mktemp("emb") / "server.log",
                 env={"DD_EMB_KEY": "emb-key"})
    with srv:
        yield srv.wait_ready()
        assert srv.stop() == 0, srv.log


@pytest.fixture(scope="module")
def client(server):
    import openai  # the dev extra's client: a missing one is an error, not a skip
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="emb-key", max_retries=0,
                         timeout=60)


def expected(hidden, text, dims=None):
    return pool(hidden(text), DEFAULT_POOLING, dims)


@pytest.mark.server
def test_openai_client_gets_the_pooled_vectors(client, hidden, paths):
    texts = list(SENTENCES[:3])
    for fmt in (None, "base64", "float"):  # None: the client asks for base64 itself and decodes it
        r = client.embeddings.create(model=FE, input=texts, **({"encoding_format": fmt} if fmt else {}))
        assert r.model == FE and [d.index for d in r.data] == [0, 1, 2]
        for d, text in zip(r.data, texts):
            got = (np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") if fmt == "base64"
                   else np.asarray(d.embedding, dtype=np.float32))
            want = expected(hidden, text)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
            assert abs(np.linalg.norm(got) - 1) < 1e-5
    tok = __import__("runtimes.tasks", fromlist=["load_tokenizer"]).load_tokenizer(paths[FE])
    assert r.usage.prompt_tokens == r.usage.total_tokens == sum(len(tok(t)["input_ids"]) for t in texts)


@pytest.mark.server
def test_one_text_token_arrays_and_dimensions(client, hidden, paths):
    one = client.embeddings.create(model=FE, input=SENTENCES[0], encoding_format="float")
    np.testing.assert_allclose(one.data[0].embedding, expected(hidden, SENTENCES[0]), atol=1e-5)
    from runtimes.tasks import load_tokenizer

    ids = load_tokenizer(paths[FE])(SENTENCES[0])["input_ids"]
    by_ids = client.embeddings.create(model=FE, input=[ids], encoding_format="float")
    np.testing.assert_allclose(by_ids.data[0].embedding, one.data[0].embedding, atol=1e-6)
    assert by_ids.usage.prompt_tokens == len(ids)
    cut = client.embeddings.create(model=FE, input=SENTENCES[0], dimensions=8, encoding_format="float")
    assert len(cut.data[0].embedding) == 8
    np.testing.assert_allclose(cut.data[0].embedding, expected(hidden, SENTENCES[0], 8), atol=1e-5)


@pytest.mark.server
def test_errors_follow_openai_shape_and_the_service_stays_up(client, server):
    import openai

    cases = [  # (kwargs, exception, words in the message)
        (dict(model="nope", input="x"), openai.NotFoundError, "unknown model 'nope'"),
        (dict(model=TC, input="x"), openai.BadRequestError, "feature-extraction"),
        (dict(model=FE, input=""), openai.BadRequestError, "empty"),
        (dict(model=FE, input=["a"] * 9), openai.APIStatusError, "at most 8"),
        (dict(model=FE, input="x", dimensions=100000), openai.BadRequestError, "dimensions must be"),
        (dict(model=FE, input=[[10 ** 7]]), openai.BadRequestError, "outside"),
        (dict(model=FE, input=" ".join(["tokens"] * 600)), openai.BadRequestError, "truncate"),
    ]
    for kwargs, exc, words in cases:
        with pytest.raises(exc) as e:
            client.embeddings.create(**kwargs)
        err = e.value.body
        assert words in err["message"] and err["type"] and "code" in err, (kwargs, err)
    status, _, body = server.post_json("/v1/embeddings", {"model": FE, "input": "x", "encoding_format": "hex"},
                                       {"Authorization": "Bearer emb-key"})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    long = client.embeddings.create(model=FE, input=" ".join(["tokens"] * 600), extra_body={"truncate": True})
    assert long.usage.prompt_tokens == 512
    bad = openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model=FE, input="x")
    assert {m.id for m in client.models.list()} == {FE, TC}
    status, _, meta = server.request("GET", f"/v2/models/{FE}", headers={"Authorization": "Bearer emb-key"})
    assert status == 200 and __import__("json").loads(meta)["parameters"]["pooling"] == DEFAULT_POOLING
    assert client.embeddings.create(model=FE, input="still up").data


@pytest.mark.parametrize("body,words", [
    (b"{", "not valid JSON"),
    (b'{"input": "x"}', "'model' is required"),
    (b'{"model": "m", "input": "x", "temperature": 1}', "unknown field"),
    (b'{"model": "m", "input": ["a", [1]]}', "not a mix"),
    (b'{"model": "m", "input": []}', "non-empty"),
    (b'{"model": "m", "input": "x", "dimensions": 0}', "positive integer"),
    (b'{"model": "m", "input": "x", "truncate": "yes"}', "true or false"),
])
def test_parse_embeddings_refuses_with_the_reason(body, words):
    with pytest.raises(InputError, match=words):
        parse_embeddings(body)


def test_parse_embeddings_forms():
    assert parse_embeddings(b'{"model": "m", "input": "hi"}')[1].items == ["hi"]
    assert parse_embeddings(b'{"model": "m", "input": [1, 2]}')[1].items == [[1, 2]]
    name, req, fmt = parse_embeddings(b'{"model": "m", "input": [[1], [2, 3]], "encoding_format": "base64", '
                                      b'"dimensions": 4, "truncate": true}')
    assert (name, req.items, req.dimensions, req.truncate, fmt) == ("m", [[1], [2, 3]], 4, True, "base64")


def test_pool_modes_match_their_definitions():
    h = np.array([[1.0, 2.0, 2.0], [3.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(pool(h, {"mode": "mean", "normalize": False}), [2, 1, 1])
    np.testing.assert_allclose(pool(h, {"mode": "cls", "normalize": True}), [1 / 3, 2 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(pool(h, {"mode": "max", "normalize": False}, 2), [3, 2])


def test_default_model_embeddings_equal_sentence_transformers(default_artifact):
    """The built-in default (all-MiniLM-L6-v2 converted to DistilBERT) exported for feature-extraction records the
    model's own pooling (mean, normalized), and our ONNX artifact pooled that way gives sentence-transformers'
    vectors for the original model."""
    from sentence_transformers import SentenceTransformer

    from sources.minilm import model_dir
    from runtimes.artifact import read_manifest
    from runtimes.pipeline import load_pipeline
    from runtimes.tasks.feature_extraction import pooling_config

    path = default_artifact("feature-extraction")
    pooling = pooling_config(read_manifest(path))
    assert pooling["mode"] == "mean" and pooling["normalize"] is True and "all-MiniLM-L6-v2" in pooling["from"]
    texts = list(SENTENCES[:4])
    want = SentenceTransformer(str(model_dir()), device="cpu").encode(texts)
    pipe = load_pipeline(path)
    try:
        got = np.stack([pool(np.asarray(pipe(t)[0], dtype=np.float32), pooling) for t in texts])
    finally:
        pipe.runtime.close()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
