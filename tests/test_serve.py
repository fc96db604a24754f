"""The production service end to end: a real `distilbert-deploy serve` process on 127.0.0.1, talked to by Triton's
own client (tritonclient.http, sync and aio) and plain HTTP. Answers are checked against transformers.pipeline and
the in-process runtime; every bad input of the issue's table gets its status; backpressure, deadlines, auth, metrics,
the drain and the parity refusal are exercised for real. Every request loop is bounded in count and time."""
from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import struct
import threading
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from runtimes.heads import TASKS
from serve_client import Server, delta
from tiny_tasks import CONTEXT, QUESTIONS, SENTENCES, reference, same

pytestmark = pytest.mark.server

TASK_INPUTS = {  # (inputs, pipeline parameters) per task
    "text-classification": (SENTENCES[:4], {"top_k": 2}),
    "token-classification": (SENTENCES[1:3], {"aggregation_strategy": "simple"}),
    "fill-mask": (["Paris is the [MASK] of France.", "The [MASK] sat on the [MASK] all day long."], {"top_k": 3}),
    "feature-extraction": (SENTENCES[3:5], {}),
    "question-answering": ([{"question": q, "context": CONTEXT} for q in QUESTIONS], {}),
    "multiple-choice": ([{"prompt": "The weather today is", "choices": ["sunny and warm", "a database index"]},
                         {"prompt": "She drank a cup of", "choices": ["tea", "gravel", "loud"]}], {}),
}
IN_TRANSFORMERS_5 = ("text-classification", "token-classification", "fill-mask", "feature-extraction")
LONG = " ".join(["tokens"] * 600)  # over the tiny model's 512-token limit
TC = "text-classification"


@pytest.fixture(scope="module")
def paths(runtime_of):
    """task -> the scaled tiny model's ONNX artifact (exported through the project's exporter)."""
    return {task: runtime_of(task, "onnxruntime").artifact.path for task in TASKS}


@pytest.fixture(scope="module")
def inproc(paths):
    """task -> the in-process pipeline over the same artifact."""
    from runtimes.pipeline import load_pipeline

    pipes = {task: load_pipeline(path) for task, path in paths.items()}
    yield pipes
    for p in pipes.values():
        p.runtime.close()


@pytest.fixture(scope="module")
def server(paths, tmp_path_factory):
    """Every task, max batch 4, a 20 ms batching window, small limits so the table's rows are cheap to hit."""
    args = [*paths.values()] + [x for task in paths for x in ("--name", task)]
    srv = Server(args + ["--max-batch-size", "4", "--max-queue-delay-ms", "20", "--max-queue", "64",
                         "--max-request-items", "16", "--max-body-bytes", "65536", "--timeout-s", "20"],
                 tmp_path_factory.mktemp("serve") / "server.log")
    with srv:
        yield srv.wait_ready()
        assert srv.stop() == 0, srv.log


def texts_input(http, name, texts, binary=True):
    t = http.InferInput(name, [len(texts)], "BYTES")
    t.set_data_from_numpy(np.array([x.encode() for x in texts], dtype=np.object_), binary_data=binary)
    return t


def raw_inputs(http, feed, binary=True):
    out = []
    for name in ("input_ids", "attention_mask"):
        t = http.InferInput(name, list(feed[name].shape), "INT64")
        t.set_data_from_numpy(feed[name], binary_data=binary)
        out.append(t)
    return out


def strings(arr) -> list[str]:
    """A BYTES output as str: tritonclient gives bytes from binary outputs and str from JSON ones."""
    return [x.decode() if isinstance(x, bytes) else x for x in arr.reshape(-1)]


def padded_feed(pipe, texts):
    enc = pipe.tokenizer(texts, padding=True, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}


# --- Triton's client ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_sync(server, inproc, tiny, binary):
    import tritonclient.http as http
    c = http.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert c.is_server_live() and c.is_server_ready()
    meta = c.get_server_metadata()
    assert meta["name"] == "distilbert-deploy" and "binary_tensor_data" in meta["extensions"]
    m = c.get_model_metadata(TC)
    assert m["platform"] == "onnxruntime_onnx" and m["versions"] == ["1"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in m["inputs"]] == [
        ("input_ids", "INT64", [-1, -1]), ("attention_mask", "INT64", [-1, -1])]
    assert c.is_model_ready(TC)
    cfg = c.get_model_config(TC)
    assert cfg["max_batch_size"] == 4 and cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 20000

    # text in, labels out: equal to transformers.pipeline and to the in-process runtime
    want = reference(tiny, TC)(SENTENCES)
    outs = [http.InferRequestedOutput(n, binary_data=binary) for n in ("label", "score", "answer")]
    r = c.infer(TC, [texts_input(http, "text", SENTENCES, binary)], outputs=outs)
    assert all(("binary_data_size" in o.get("parameters", {})) == binary for o in r.get_response()["outputs"])
    assert strings(r.as_numpy("label")) == [w["label"] for w in want]
    np.testing.assert_allclose(r.as_numpy("score"), [w["score"] for w in want], atol=1e-5)
    same([json.loads(x) for x in strings(r.as_numpy("answer"))], inproc[TC](SENTENCES))

    # raw tensors in, logits out: equal to the in-process runtime on the same feed
    feed = padded_feed(inproc[TC], SENTENCES)
    r = c.infer(TC, raw_inputs(http, feed, binary), outputs=[http.InferRequestedOutput("logits", binary_data=binary)])
    np.testing.assert_allclose(r.as_numpy("logits"), inproc[TC].runtime.infer(feed)["logits"], atol=1e-5)


def test_tritonclient_default_request_is_binary_both_ways(server, inproc):
    import tritonclient.http as http
    c = http.InferenceServerClient(f"127.0.0.1:{server.port}")
    r = c.infer(TC, [texts_input(http, "text", SENTENCES[:2])])  # no outputs named: the client asks for binary
    assert all("binary_data_size" in o["parameters"] for o in r.get_response()["outputs"])
    assert {o["name"] for o in r.get_response()["outputs"]} == {"answer", "label", "score"}
    same([json.loads(x) for x in strings(r.as_numpy("answer"))], inproc[TC](SENTENCES[:2]))


def test_tritonclient_aio(server, inproc, tiny):
    import tritonclient.http.aio as aio
    import tritonclient.http as http
    qa = "question-answering"
    want = inproc[qa]([{"question": q, "context": CONTEXT} for q in QUESTIONS])
    labels = [w["label"] for w in reference(tiny, TC)(SENTENCES)]  # transformers.pipeline

    async def main():
        c = aio.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            assert await c.is_server_live() and await c.is_server_ready() and await c.is_model_ready(qa)
            assert (await c.get_server_metadata())["name"] == "distilbert-deploy"
            r = await c.infer(TC, [texts_input(http, "text", SENTENCES)])
            assert strings(r.as_numpy("label")) == labels
            assert [o["name"] for o in (await c.get_model_metadata(qa))["outputs"]] == ["start_logits", "end_logits"]
            r = await c.infer(qa, [texts_input(http, "question", QUESTIONS),
                                   texts_input(http, "context", [CONTEXT] * len(QUESTIONS))])
            assert strings(r.as_numpy("answer_text")) == [w["answer"] for w in want]
            assert r.as_numpy("start").tolist() == [w["start"] for w in want]
            np.testing.assert_allclose(r.as_numpy("score"), [w["score"] for w in want], atol=1e-5)
            feed = padded_feed(inproc[qa], QUESTIONS)
            r = await c.infer(qa, raw_inputs(http, feed))
            ref = inproc[qa].runtime.infer(feed)
            for name in ("start_logits", "end_logits"):
                np.testing.assert_allclose(r.as_numpy(name), ref[name], atol=1e-5)
        finally:
            await c.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_tritonclient_multiple_choice_text(server, inproc):
    import tritonclient.http as http
    c = http.InferenceServerClient(f"127.0.0.1:{server.port}")
    items = [{"prompt": "The weather today is", "choices": ["sunny and warm", "a database index"]},
             {"prompt": "She drank a cup of", "choices": ["hot tea", "gravel"]}]
    choices = http.InferInput("choices", [2, 2], "BYTES")
    choices.set_data_from_numpy(np.array([[c.encode() for c in x["choices"]] for x in items], dtype=np.object_))
    r = c.infer("multiple-choice", [texts_input(http, "prompt", [x["prompt"] for x in items]), choices])
    same([json.loads(x) for x in strings(r.as_numpy("answer"))], inproc["multiple-choice"](items))


# --- the task endpoint --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_task_endpoint_answers_like_the_pipeline(server, inproc, tiny, task):
    inputs, params = TASK_INPUTS[task]
    status, _, got = server.predict(task, inputs, **params)
    assert status == 200, got
    same(got, inproc[task](inputs, **params))
    if task in IN_TRANSFORMERS_5:  # question-answering is checked against transformers 4.57 in test_tasks_tf4
        same(got, reference(tiny, task)(inputs, **params))
    status, _, one = server.predict(task, inputs[0], **params)
    assert status == 200, one
    same(one, inproc[task](inputs[0], **params))


# --- bad input: the table ---------------------------------------------------------------------------


def infer_doc(*inputs, **parameters):
    return {"inputs": [{"name": n, "shape": s, "datatype": d, "data": x} for n, s, d, x in inputs],
            **({"parameters": parameters} if parameters else {})}


def binary_text_body(texts: list[bytes]):
    raw = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    head = json.dumps({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


BAD = [  # id, path, body, headers, status, words the error must contain
    ("unknown-model", "/v2/models/nope/infer", infer_doc(("text", [1], "BYTES", ["hi"])), {}, 404, "unknown model"),
    ("model-name-is-not-a-path", "/v2/models/..%2F..%2Fetc/infer", infer_doc(("text", [1], "BYTES", ["hi"])), {}, 404,
     "not found"),
    ("malformed-json", f"/v2/models/{TC}/infer", b"{not json", {}, 400, "not valid json"),
    ("malformed-binary-header", f"/v2/models/{TC}/infer", infer_doc(("text", [1], "BYTES", ["hi"])),
     {"Inference-Header-Content-Length": "99999"}, 400, "inference-header-content-length"),
    ("binary-size-beyond-body", f"/v2/models/{TC}/infer", None, {}, 400, "binary_data_size"),
    ("missing-input", "/v2/models/question-answering/infer", infer_doc(("question", [1], "BYTES", ["who?"])), {}, 400,
     "lacks ['context']"),
    ("wrong-datatype", f"/v2/models/{TC}/infer", infer_doc(("input_ids", [1, 3], "FP32", [101.0, 7592.0, 102.0]),
                                                           ("attention_mask", [1, 3], "INT64", [1, 1, 1])), {}, 400,
     "expected int64"),
    ("wrong-shape", f"/v2/models/{TC}/infer", infer_doc(("input_ids", [1, 3], "INT64", [101, 7592, 102]),
                                                        ("attention_mask", [1, 4], "INT64", [1, 1, 1, 0])), {}, 400,
     "one shape"),
    ("data-not-matching-shape", f"/v2/models/{TC}/infer", infer_doc(("text", [3], "BYTES", ["a", "b"])), {}, 400,
     "needs 3"),
    ("empty-text", f"/v2/models/{TC}/infer", infer_doc(("text", [1], "BYTES", [""])), {}, 400, "non-empty"),
    ("non-utf8", f"/v2/models/{TC}/infer", None, {}, 400, "utf-8"),
    ("ids-outside-vocabulary", f"/v2/models/{TC}/infer", infer_doc(("input_ids", [1, 2], "INT64", [101, 99999999]),
                                                                   ("attention_mask", [1, 2], "INT64", [1, 1])), {},
     400, "vocabulary"),
    ("unknown-option", f"/v1/models/{TC}/predict", {"inputs": "hi", "parameters": {"top_q": 3}}, {}, 400,
     "does not take top_q"),
    ("body-over-limit", f"/v1/models/{TC}/predict", {"inputs": "x" * 70000}, {}, 413, "max-body-bytes"),
    ("too-many-texts", f"/v1/models/{TC}/predict", {"inputs": ["hi"] * 17}, {}, 413, "at most 16"),
    ("too-long-without-truncation", f"/v1/models/{TC}/predict", {"inputs": LONG, "parameters": {"truncation": False}},
     {}, 400, "longer than max_length"),
    ("deadline-passed", f"/v1/models/{TC}/predict", {"inputs": SENTENCES, "parameters": {"timeout": 1}}, {}, 504,
     "deadline"),
]


@pytest.mark.parametrize("path,body,headers,status,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_gets_its_status_and_the_service_stays_up(server, inproc, path, body, headers, status, words):
    if body is None and "utf" in words:
        body, headers = binary_text_body([b"fine", b"\xff\xfe broken"])
    elif body is None:
        body, headers = binary_text_body([b"fine"])
        body += b"\x00" * 3  # bytes no input claims
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, hdrs, reply = server.request("POST", path, raw, headers)
    assert got == status, reply
    error = json.loads(reply)["error"]
    assert words in error.lower(), error
    assert server.request("GET", "/v2/health/live")[0] == 200  # still up, and still right:
    ok, _, answer = server.predict(TC, SENTENCES[0])
    assert ok == 200
    same(answer, inproc[TC](SENTENCES[0]))


def test_overlong_text_is_truncated_by_default_and_the_response_says_so(server, inproc):
    status, hdrs, got = server.predict(TC, [SENTENCES[0], LONG])
    assert status == 200 and hdrs["x-truncated-inputs"] == "1"
    with pytest.warns(UserWarning, match="truncated"):
        same(got, inproc[TC]([SENTENCES[0], LONG]))
    status, _, reply = server.request("POST", f"/v2/models/{TC}/infer",
                                      json.dumps(infer_doc(("text", [2], "BYTES", [LONG, "ok"]))).encode())
    assert status == 200 and json.loads(reply)["parameters"]["truncated_inputs"] == [0]


# --- batching -------------------------------------------------------------------------------------------------


def test_batching_never_changes_an_answer(server, inproc):
    """Each text alone (sequential requests: batches of one) against the same texts mixed into concurrent requests
    that the batcher groups and pads together: identical answers, and batches of more than one did form."""
    from sources.tweets import split

    texts = SENTENCES + [t.text for t in split()[1][:17]]
    alone = {}
    for t in texts:
        status, _, got = server.predict(TC, [t], top_k=None)
        assert status == 200
        alone[t] = got[0]
    rng = random.Random(0)
    requests = [rng.sample(texts, rng.randint(1, 3)) for _ in range(40)]
    before = server.metrics()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda r: (r, server.predict(TC, r, top_k=None)), requests, timeout=120))
    after = server.metrics()
    rows = sum(map(len, requests))
    assert delta(after, before, "distilbert_deploy_batch_size_sum", model=TC) == rows
    assert delta(after, before, "distilbert_deploy_batch_size_count", model=TC) < rows  # some batches held several
    for texts_sent, (status, _, got) in results:
        assert status == 200
        for t, answer in zip(texts_sent, got):
            assert answer == alone[t], (t, answer, alone[t])  # exactly: padding and company change nothing


# --- metrics --------------------------------------------------------------------------------------------------


def test_metrics_count_what_was_sent(server):
    before = server.metrics()
    for texts in (SENTENCES[:2], SENTENCES[2:5], SENTENCES[5:6]):
        assert server.predict(TC, texts)[0] == 200
    assert server.predict("nope", "hi")[0] == 404
    assert server.predict(TC, "")[0] == 400
    after = server.metrics()
    assert delta(after, before, "distilbert_deploy_requests_total", model=TC, endpoint="predict", status="200") == 3
    assert delta(after, before, "distilbert_deploy_requests_total", model=TC, endpoint="predict", status="400") == 1
    assert delta(after, before, "distilbert_deploy_requests_total", model="_unknown", endpoint="predict",
                 status="404") == 1
    assert delta(after, before, "distilbert_deploy_errors_total", model=TC, kind="bad_input") == 1
    assert delta(after, before, "distilbert_deploy_errors_total", model="_unknown", kind="not_found") == 1
    assert delta(after, before, "distilbert_deploy_request_seconds_count", model=TC, endpoint="predict") == 4
    assert delta(after, before, "distilbert_deploy_queue_wait_seconds_count", model=TC) == 6  # one per text
    assert delta(after, before, "distilbert_deploy_batch_size_sum", model=TC) == 6
    assert delta(after, before, "distilbert_deploy_inference_seconds_count", model=TC) == \
        delta(after, before, "distilbert_deploy_batch_size_count", model=TC) >= 3
    assert delta(after, before, "distilbert_deploy_batch_tokens_sum", model=TC) >= \
        delta(after, before, "distilbert_deploy_padding_tokens_sum", model=TC) + 6 * 3  # >= 3 real tokens a text
    assert after[("distilbert_deploy_queue_depth", (("model", TC),))] == 0
    assert after[("distilbert_deploy_inflight_requests", ())] == 0


# --- a tight server: backpressure and auth -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight(paths, tmp_path_factory):
    """One instance running one row at a time, a queue of 4 rows, and an API key."""
    srv = Server([paths[TC], "--max-batch-size", "1", "--max-queue", "4", "--max-queue-delay-ms", "0",
                  "--threads", "1", "--api-key-env", "DD_TEST_KEY"],
                 tmp_path_factory.mktemp("tight") / "server.log", env={"DD_TEST_KEY": "s3cret-key"})
    with srv:
        yield srv.wait_ready()
        assert srv.stop() == 0, srv.log


KEY = {"Authorization": "Bearer s3cret-key"}


def test_api_key(tight, paths):
    import tritonclient.http as http
    name = paths[TC].name
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cret-ke"}):
        status, hdrs, body = tight.predict(name, "hi", headers)
        assert status == 401 and "api key" in body["error"].lower() and hdrs["www-authenticate"] == "Bearer"
    assert tight.request("GET", "/metrics")[0] == 401
    assert tight.request("GET", "/v2/health/live")[0] == tight.request("GET", "/v2/health/ready")[0] == 200
    assert tight.predict(name, "hi", KEY)[0] == 200
    assert tight.predict(name, "hi", {"X-API-Key": "s3cret-key"})[0] == 200
    c = http.InferenceServerClient(f"127.0.0.1:{tight.port}")
    with pytest.raises(Exception) as e:
        c.get_server_metadata()
    assert e.value.status() == "401" or e.value.status() == 401
    assert c.get_server_metadata(headers=KEY)["name"] == "distilbert-deploy"


def test_backpressure_burst(tight, paths, inproc):
    """40 concurrent requests of 3 long texts against a queue of 4 rows: some get 503 with Retry-After, nothing else
    fails, and every accepted request gets the right answers."""
    name = paths[TC].name
    texts = [f"{s} " + " ".join([s] * 25) for s in SENTENCES[:3]]
    want = inproc[TC](texts)
    before = tight.metrics(KEY)
    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(lambda _: tight.predict(name, texts, KEY), range(40), timeout=120))
    after = tight.metrics(KEY)
    statuses = [s for s, _, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses and 200 in statuses, statuses
    for status, hdrs, body in results:
        if status == 503:
            assert hdrs["retry-after"] == "1" and "queue is full" in body["error"]
        else:
            same(body, want)
    assert delta(after, before, "distilbert_deploy_errors_total", model=name, kind="queue_full") == statuses.count(503)
    assert after[("distilbert_deploy_queue_depth", (("model", name),))] == 0
    assert tight.predict(name, "still fine", KEY)[0] == 200


# --- lifecycle: drain, parity refusal, no torch ---------------------------------------------------------------


def test_sigterm_drains_under_load(paths, inproc, tmp_path):
    """SIGTERM while requests are running: readiness turns false, a new request gets 503, every request accepted
    before the signal is answered correctly, and the process exits 0. The requests are held in the runtime by a
    gate (tests/gated_serve.py) that the test opens HOLD_S after the signal, so they are in flight when it comes and
    for that long after, on any machine, however fast or slow: no request duration is assumed. A server that does not
    drain is gone within uvicorn's own ~0.2 s grace and fails; a draining one waits up to --drain-timeout-s (60 s)."""
    HOLD_S = 2.0  # how long the test keeps the requests held after the signal (a correct server waits 60 s)
    gate = tmp_path / "gate"  # absent: every batch waits in the runtime
    srv = Server([paths[TC], "--max-batch-size", "1", "--threads", "1", "--max-queue", "1024",
                  "--drain-timeout-s", "60"], tmp_path / "server.log", gate=gate)
    with srv:
        srv.wait_ready()
        name = paths[TC].name
        texts = SENTENCES  # 7 rows, one batch each: every request waits at the gate
        want = inproc[TC](texts)
        clients = 12
        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(srv.predict, name, texts) for _ in range(clients)]
            try:
                deadline = time.monotonic() + 60  # bounds a hang only: held at the gate, they all get in
                while srv.metrics()[("distilbert_deploy_inflight_requests", ())] < clients:
                    assert time.monotonic() < deadline, f"the requests were never all in flight:\n{srv.log}"
                    time.sleep(0.01)
                srv.proc.send_signal(signal.SIGTERM)
                time.sleep(HOLD_S)  # the drain is under way: the server is up, answering, and refusing new work
                alive = srv.proc.poll() is None and srv.request("GET", "/v2/health/live")[0] == 200
                late = srv.predict(name, "too late")
                ready = srv.request("GET", "/v2/health/ready")[0]
                running = [f.done() for f in futures]  # all still held: the signal came while they ran
            finally:
                gate.touch()  # now let them through (and never leave a client waiting on a failed test)
            results = [f.result(timeout=120) for f in futures]
        assert srv.proc.wait(60) == 0, srv.log
    assert late[0] == 503 and "shutting down" in late[2]["error"]
    assert ready == 503
    assert alive and running == [False] * clients
    assert [status for status, _, _ in results] == [200] * clients, results  # every accepted request answered ...
    for _, _, body in results:
        same(body, want)  # ... correctly


def test_failed_parity_is_refused_at_start(paths, tmp_path):
    from runtimes.artifact import read_manifest, update_manifest

    bad = tmp_path / "failed"
    shutil.copytree(paths[TC], bad)
    m = read_manifest(bad)
    update_manifest(bad, parity={**m.parity, "suite": {"passed": False, "runs": {"fp32": {"passed": False}}}})
    r = subprocess.run([sys.executable, "-m", "distilbert_deploy.cli", "serve", str(bad), "--port", "9"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "refusing to serve" in r.stderr and "parity suite failed for precision fp32" in r.stderr

    unjudged = tmp_path / "unjudged"
    shutil.copytree(paths[TC], unjudged)
    update_manifest(unjudged, parity={})
    r = subprocess.run([sys.executable, "-m", "distilbert_deploy.cli", "serve", str(unjudged), "--port", "9"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no parity-suite verdict" in r.stderr and "--allow-unjudged" in r.stderr

    from runtimes.serving.config import ServeConfig
    from runtimes.serving.model import ServedModel

    cfg = ServeConfig(artifacts=(unjudged,), allow_unjudged=True)
    assert ServedModel("unjudged", unjudged, cfg).judged == "no parity-suite verdict recorded"
    with pytest.raises(Exception, match="refusing to serve"):
        ServedModel("failed", bad, ServeConfig(artifacts=(bad,), allow_unjudged=True))

    (unjudged / "model.onnx").write_bytes(b"tampered")
    r = subprocess.run([sys.executable, "-m", "distilbert_deploy.cli", "serve", str(unjudged), "--allow-unjudged"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "checksum" in r.stderr


def test_the_service_never_loads_torch(server):
    code = ("import sys, runtimes.serving.server, runtimes.serving.app; "
            "bad = [m for m in ('torch', 'tensorrt', 'transformers.modeling_utils') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    maps = open(f"/proc/{server.proc.pid}/maps").read()  # the running server, after every test above
    assert "libtorch" not in maps


def test_start_errors_are_clear(paths, tmp_path):
    cases = [([str(paths[TC]), "--max-batch-size", "100"], "over what"),
             ([str(paths[TC]), str(paths[TC])], "two models are named"),
             ([str(paths[TC]), "--api-key-env", "DD_UNSET_VARIABLE"], "unset or empty"),
             ([str(tmp_path / "missing")], "does not exist")]
    for args, words in cases:
        r = subprocess.run([sys.executable, "-m", "distilbert_deploy.cli", "serve", *args, "--port", "9"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)


def test_repository_serves_each_subdirectory_under_its_name(paths, tmp_path):
    from runtimes.errors import ConfigError
    from runtimes.serving.config import ServeConfig
    from runtimes.serving.model import model_dirs

    repo = tmp_path / "repo"
    shutil.copytree(paths[TC], repo / "sentiment")
    (repo / ".sentiment.partial").mkdir()  # a staging dir is never a model
    (repo / "notes").mkdir()  # nor is a directory without a manifest
    assert model_dirs(ServeConfig(repository=repo)) == [("sentiment", repo / "sentiment")]
    assert model_dirs(ServeConfig(artifacts=(paths["fill-mask"],), names=("mlm",), repository=repo)) == [
        ("mlm", paths["fill-mask"]), ("sentiment", repo / "sentiment")]
    with pytest.raises(ConfigError, match="two models are named 'sentiment'"):
        model_dirs(ServeConfig(artifacts=(paths[TC],), names=("sentiment",), repository=repo))
    with pytest.raises(ConfigError, match="not allowed"):
        ServeConfig(artifacts=(paths[TC],), names=("../etc",))


def test_tokenization_never_blocks_the_event_loop(paths, inproc, tmp_path):
    """While one request of --max-request-items (256) long texts (7 MB, ~2.5 s of parsing and tokenizing on 2
    cores) is being prepared, /v2/health/ready and a one-text request each answer within BOUND_S, every time.
    Tokenizing on the loop would hold both for the whole preparation. The probes that count are those that ended
    before the long request's answer; at least 3 must, or the test cannot tell and fails."""
    BOUND_S = 0.5
    name = paths[TC].name
    words = ("the quick brown fox jumps over the lazy dog and keeps running far away " * 420)[:30000]
    big = [f"{i} {words}" for i in range(256)]
    srv = Server([paths[TC], "--max-request-items", "256", "--max-queue", "512"], tmp_path / "server.log")
    with srv:
        srv.wait_ready()
        done: dict = {}

        def send_big():
            done["response"] = srv.predict(name, big)
            done["at"] = time.monotonic()

        sender = threading.Thread(target=send_big)
        start = time.monotonic()
        sender.start()
        time.sleep(0.3)  # the body is on its way / being prepared
        probes = []
        while sender.is_alive() and len(probes) < 50 and time.monotonic() - start < 60:
            t0 = time.monotonic()
            ready = srv.request("GET", "/v2/health/ready", timeout=30)[0]
            t1 = time.monotonic()
            status, _, answer = srv.predict(name, "one short text")
            probes.append((t1 - t0, time.monotonic() - t1, time.monotonic(), ready, status, answer))
        sender.join(120)
        status, _, answers = done["response"]
        assert status == 200 and len(answers) == 256, answers
        during = [p for p in probes if p[2] < done["at"]]
        assert len(during) >= 3, f"only {len(during)} probes ran while the long request was prepared; " \
                                 f"{done['at'] - start:.2f} s"
        want = inproc[TC]("one short text")
        for ready_s, predict_s, _, ready, st, answer in during:
            assert ready == st == 200 and answer == want
            assert ready_s < BOUND_S and predict_s < BOUND_S, (ready_s, predict_s, done["at"] - start)
        assert srv.stop() == 0, srv.log
