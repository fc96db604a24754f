"""OIP v2 over gRPC end to end: a real `distilbert-deploy serve --grpc-port` process talked to by Triton's own client
(tritonclient.grpc, sync and aio, and its generated stub for requests the client will not build). Answers are checked
against the in-process pipeline and REST on the same server; every bad input of the REST table gets its gRPC code;
a burst beyond the queue, the API key, the metrics and the SIGTERM drain are exercised for real. Every request loop is
bounded in count and time."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from serve_client import Server, delta, free_port
from tiny_tasks import CONTEXT, QUESTIONS, SENTENCES, reference, same

TC, QA, MC = "text-classification", "question-answering", "multiple-choice"
LONG = " ".join(["tokens"] * 600)  # over the tiny model's 512-token limit
KEY = {"authorization": "Bearer s3cret-key"}  # gRPC metadata keys are lowercase
REST_KEY = {"Authorization": "Bearer s3cret-key"}
MAX_QUEUE = 8


@pytest.fixture(scope="module")
def paths(runtime_of):
    return {task: runtime_of(task, "onnxruntime").artifact.path for task in (TC, QA, MC)}


@pytest.fixture(scope="module")
def inproc(paths):
    from runtimes.pipeline import load_pipeline

    pipes = {task: load_pipeline(path) for task, path in paths.items()}
    yield pipes
    for p in pipes.values():
        p.runtime.close()


def grpc_server(args: list, log, gate, env: dict | None = None) -> Server:
    gate.touch()  # open: a test closes it (removes the file) to hold batches in the runtime
    port = free_port()
    srv = Server([*args, "--grpc-port", str(port)], log, env=env, gate=gate)
    srv.grpc_port, srv.gate = port, gate
    return srv


@pytest.fixture(scope="module")
def server(paths, tmp_path_factory):
    """Three tasks behind an API key; max batch 4, a queue of 8 rows, at most 8 texts and 64 KiB a request."""
    tmp = tmp_path_factory.mktemp("grpc")
    args = [*paths.values()] + [x for task in paths for x in ("--name", task)]
    srv = grpc_server(args + ["--max-batch-size", "4", "--max-queue", str(MAX_QUEUE), "--max-queue-delay-ms", "5",
                              "--max-request-items", "8", "--max-body-bytes", "65536", "--timeout-s", "60",
                              "--api-key-env", "DD_TEST_KEY"], tmp / "server.log", tmp / "gate",
                      env={"DD_TEST_KEY": "s3cret-key"})
    with srv:
        yield srv.wait_ready()
        assert srv.stop() == 0, srv.log


def client(server):
    import tritonclient.grpc as grpcclient
    return grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")


def stub(server):
    """tritonclient's own generated stub, for requests its client will not build (typed contents, bad datatypes)."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc
    return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))


def status_of(e: BaseException) -> tuple[str, str]:
    """(code name, message) of a tritonclient exception or a grpc.RpcError."""
    if hasattr(e, "code"):
        return e.code().name, e.details()
    return str(e.status()).removeprefix("StatusCode."), e.message()


def infer_inputs(inputs: dict[str, np.ndarray]):
    import tritonclient.grpc as grpcclient
    out = []
    for name, arr in inputs.items():
        t = grpcclient.InferInput(name, list(arr.shape), "BYTES" if arr.dtype == np.object_ else "INT64")
        t.set_data_from_numpy(arr)
        out.append(t)
    return out


def as_arrays(result, names) -> dict[str, np.ndarray]:
    return {n: result.as_numpy(n) for n in names}


def rest_infer(server, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    doc = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": "BYTES" if a.dtype == np.object_ else "INT64",
                       "data": [x.decode() for x in a.reshape(-1)] if a.dtype == np.object_ else a.reshape(-1).tolist()}
                      for n, a in inputs.items()]}
    status, _, body = server.post_json(f"/v2/models/{model}/infer", doc, REST_KEY)
    assert status == 200, body
    return {o["name"]: np.array([x.encode() for x in o["data"]] if o["datatype"] == "BYTES" else o["data"],
                                dtype=np.object_ if o["datatype"] == "BYTES" else None).reshape(o["shape"])
            for o in body["outputs"]}


def assert_same(got: dict, want: dict) -> None:
    """The same tensors: BYTES equal (the `answer` JSON with numbers within 1e-4), numbers within 1e-5."""
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape, (name, g.shape, w.shape)
        if name == "answer":
            for a, b in zip(g.reshape(-1), w.reshape(-1)):
                same(json.loads(a), json.loads(b))
        elif w.dtype == np.object_:
            assert g.tolist() == w.tolist(), name
        else:
            np.testing.assert_allclose(g, w, atol=1e-5, err_msg=name)


def texts(xs) -> np.ndarray:
    return np.array([x.encode() for x in xs], dtype=np.object_)


def padded_feed(pipe, xs):
    enc = pipe.tokenizer(xs, padding=True, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}


MC_ITEMS = [{"prompt": "The weather today is", "choices": ["sunny and warm", "a database index"]},
            {"prompt": "She drank a cup of", "choices": ["hot tea", "gravel"]}]


def cases(inproc):
    """id -> (model, input tensors, what the in-process runtime says: (answers, outputs) per output name)."""
    qa_items = [{"question": q, "context": CONTEXT} for q in QUESTIONS]
    feed = padded_feed(inproc[TC], SENTENCES)
    return {
        "text": (TC, {"text": texts(SENTENCES)}, {"answer": inproc[TC](SENTENCES)}),
        "raw": (TC, feed, {"logits": inproc[TC].runtime.infer(feed)["logits"]}),
        "qa": (QA, {"question": texts(QUESTIONS), "context": texts([CONTEXT] * len(QUESTIONS))},
               {"answer": inproc[QA](qa_items)}),
        "mc": (MC, {"prompt": texts([x["prompt"] for x in MC_ITEMS]),
                    "choices": np.array([texts(x["choices"]) for x in MC_ITEMS], dtype=np.object_)},
               {"answer": inproc[MC](MC_ITEMS)}),
    }


def check_inproc(got: dict, want: dict) -> None:
    for name, w in want.items():
        if name == "answer":
            same([json.loads(x) for x in got["answer"]], w)
        else:
            np.testing.assert_allclose(got[name], w, atol=1e-5)


# --- answers: sync and aio clients, equal to the in-process runtime and to REST ---------------------------------


@pytest.mark.server
def test_sync_client(server, inproc, tiny):
    c = client(server)
    assert c.is_server_live() and c.is_server_ready()
    meta = c.get_server_metadata(headers=KEY)
    assert meta.name == "distilbert-deploy" and "binary_tensor_data" in meta.extensions
    m = c.get_model_metadata(TC, headers=KEY)
    assert m.platform == "onnxruntime_onnx" and list(m.versions) == ["1"]
    assert [(i.name, i.datatype, list(i.shape)) for i in m.inputs] == [
        ("input_ids", "INT64", [-1, -1]), ("attention_mask", "INT64", [-1, -1])]
    assert c.is_model_ready(QA, headers=KEY) and c.is_model_ready(TC, "1", headers=KEY)
    cfg = c.get_model_config(MC, headers=KEY).config
    assert cfg.max_batch_size == 4 and cfg.dynamic_batching.default_queue_policy.max_queue_size == MAX_QUEUE
    assert [(i.name, list(i.dims)) for i in cfg.input][-2:] == [("prompt", []), ("choices", [-1])]

    for case, (model, inputs, want) in cases(inproc).items():
        r = c.infer(model, infer_inputs(inputs), headers=KEY)
        got = as_arrays(r, [o.name for o in r.get_response().outputs])
        check_inproc(got, want)
        assert_same(got, rest_infer(server, model, inputs))
        if case == "text":  # and transformers.pipeline's labels
            assert [x.decode() for x in got["label"]] == [w["label"] for w in reference(tiny, TC)(SENTENCES)]

    # typed contents (bytes_contents, int64_contents) give what raw_input_contents give
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import service_pb2 as tpb
    s = stub(server)
    text = tpb.ModelInferRequest(model_name=TC)
    text.inputs.add(name="text", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(texts(SENTENCES[:2]))
    r = grpcclient.InferResult(s.ModelInfer(text, metadata=tuple(KEY.items()), timeout=60))
    check_inproc(as_arrays(r, ["answer"]), {"answer": inproc[TC](SENTENCES[:2])})
    feed = padded_feed(inproc[TC], SENTENCES[:2])
    raw = tpb.ModelInferRequest(model_name=TC)
    for name, a in feed.items():
        raw.inputs.add(name=name, datatype="INT64", shape=list(a.shape)).contents.int64_contents.extend(
            a.reshape(-1).tolist())
    r = grpcclient.InferResult(s.ModelInfer(raw, metadata=tuple(KEY.items()), timeout=60))
    np.testing.assert_allclose(r.as_numpy("logits"), inproc[TC].runtime.infer(feed)["logits"], atol=1e-5)

    # what this service does not offer answers UNIMPLEMENTED
    with pytest.raises(Exception) as e:
        c.get_inference_statistics(TC, headers=KEY)
    assert status_of(e.value)[0] == "UNIMPLEMENTED"


@pytest.mark.server
def test_aio_client(server, inproc):
    import tritonclient.grpc.aio as aio

    async def main():
        c = aio.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            assert await c.is_server_live() and await c.is_server_ready()
            assert await c.is_model_ready(MC, headers=KEY)
            assert (await c.get_server_metadata(headers=KEY)).name == "distilbert-deploy"
            assert [o.name for o in (await c.get_model_metadata(QA, headers=KEY)).outputs] == ["start_logits",
                                                                                               "end_logits"]
            got = {}
            for case, (model, inputs, _) in cases(inproc).items():
                r = await c.infer(model, infer_inputs(inputs), headers=KEY)
                got[case] = as_arrays(r, [o.name for o in r.get_response().outputs])
            return got
        finally:
            await c.close()

    got = asyncio.run(asyncio.wait_for(main(), 60))
    for case, (model, inputs, want) in cases(inproc).items():
        check_inproc(got[case], want)
        assert_same(got[case], rest_infer(server, model, inputs))


# --- bad input: the REST table, with gRPC codes ----------------------------------------------------------------


def txt(name, xs, shape=None):
    return name, "BYTES", shape or [len(xs)], xs


def ids_and_mask(ids, mask, ids_type="INT64"):
    return [("input_ids", ids_type, [1, len(ids)], ids), ("attention_mask", "INT64", [1, len(mask)], mask)]


BAD = [  # id, model, inputs (name, datatype, shape, values), request options, gRPC code, words the message holds
    ("unknown-model", "nope", [txt("text", ["hi"])], {}, "NOT_FOUND", "unknown model 'nope'"),
    ("unknown-version", TC, [txt("text", ["hi"])], {"version": "7"}, "NOT_FOUND", "no version '7'"),
    ("not-an-oip-datatype", TC, [("text", "STRING", [1], ["hi"])], {}, "INVALID_ARGUMENT", "not an oip datatype"),
    ("wrong-datatype", TC, ids_and_mask([101.0, 7592.0, 102.0], [1, 1, 1], "FP32"), {}, "INVALID_ARGUMENT",
     "expected int64"),
    ("wrong-shape", TC, ids_and_mask([101, 7592, 102], [1, 1, 1, 0]), {}, "INVALID_ARGUMENT", "one shape"),
    ("missing-input", QA, [txt("question", ["who?"])], {}, "INVALID_ARGUMENT", "lacks ['context']"),
    ("data-not-matching-shape", TC, [txt("text", ["a", "b"], [3])], {}, "INVALID_ARGUMENT", "needs 3"),
    ("typed-contents-not-matching-shape", TC, [txt("text", ["a", "b"], [3])], {"typed": True}, "INVALID_ARGUMENT",
     "needs 3"),
    ("raw-contents-not-one-per-input", TC, [txt("text", ["a"])], {"extra_raw": True}, "INVALID_ARGUMENT",
     "raw_input_contents has 2 entries for 1 inputs"),
    ("empty-text", TC, [txt("text", [""])], {}, "INVALID_ARGUMENT", "non-empty"),
    ("non-utf8", TC, [txt("text", [b"fine", b"\xff\xfe broken"])], {}, "INVALID_ARGUMENT", "utf-8"),
    ("ids-outside-vocabulary", TC, ids_and_mask([101, 99999999], [1, 1]), {}, "INVALID_ARGUMENT", "vocabulary"),
    ("unknown-option", TC, [txt("text", ["hi"])], {"params": {"top_q": 3}}, "INVALID_ARGUMENT", "does not take top_q"),
    ("bad-timeout", TC, [txt("text", ["hi"])], {"params": {"timeout": "soon"}}, "INVALID_ARGUMENT",
     "parameters.timeout must be a positive number"),
    ("unknown-output", TC, [txt("text", ["hi"])], {"outputs": ["nope"]}, "INVALID_ARGUMENT", "no output ['nope']"),
    ("too-long-without-truncation", TC, [txt("text", [LONG])], {"params": {"truncation": False}}, "INVALID_ARGUMENT",
     "longer than max_length"),
    ("too-many-texts", TC, [txt("text", ["hi"] * 9)], {}, "RESOURCE_EXHAUSTED", "at most 8"),
    ("message-over-limit", TC, [txt("text", ["x" * 70000])], {}, "RESOURCE_EXHAUSTED", "at most 65536 (--max-body-bytes)"),
    ("message-over-twice-the-limit", TC, [txt("text", ["x" * 140000])], {}, "RESOURCE_EXHAUSTED", "larger than max"),
    ("deadline-passed", TC, [txt("text", SENTENCES)], {"params": {"timeout": 1}}, "DEADLINE_EXCEEDED", "deadline"),
    ("no-api-key", TC, [txt("text", ["hi"])], {"metadata": ()}, "UNAUTHENTICATED", "api key"),
    ("wrong-api-key", TC, [txt("text", ["hi"])], {"metadata": (("authorization", "Bearer wrong"),)},
     "UNAUTHENTICATED", "api key"),
]


def build_request(model, inputs, version="", params=None, outputs=(), typed=False, extra_raw=False, **_):
    """A ModelInferRequest from tritonclient's own message classes, raw_input_contents unless typed."""
    from tritonclient.grpc import service_pb2 as tpb
    req = tpb.ModelInferRequest(model_name=model, model_version=version)
    for name, dtype, shape, values in inputs:
        t = req.inputs.add(name=name, datatype=dtype, shape=shape)
        if dtype in ("BYTES", "STRING"):
            items = [v if isinstance(v, bytes) else v.encode() for v in values]
            if typed:
                t.contents.bytes_contents.extend(items)
            else:
                req.raw_input_contents.append(b"".join(len(v).to_bytes(4, "little") + v for v in items))
        else:
            req.raw_input_contents.append(np.asarray(values, dtype={"INT64": "<i8", "FP32": "<f4"}[dtype]).tobytes())
    if extra_raw:
        req.raw_input_contents.append(b"")
    for key, value in (params or {}).items():
        field = {bool: "bool_param", int: "int64_param", str: "string_param"}[type(value)]
        setattr(req.parameters[key], field, value)
    for name in outputs:
        req.outputs.add(name=name)
    return req


@pytest.mark.server
@pytest.mark.parametrize("model,inputs,options,code,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_gets_its_code_and_the_service_stays_up(server, inproc, model, inputs, options, code, words):
    import grpc
    with pytest.raises(grpc.RpcError) as e:
        stub(server).ModelInfer(build_request(model, inputs, **options), metadata=options.get("metadata", tuple(
            KEY.items())), timeout=60)
    assert status_of(e.value)[0] == code, status_of(e.value)
    assert words in e.value.details().lower(), e.value.details()
    c = client(server)  # still up, and still right:
    assert c.is_server_live()
    r = c.infer(TC, infer_inputs({"text": texts(SENTENCES[:1])}), headers=KEY)
    check_inproc(as_arrays(r, ["answer"]), {"answer": inproc[TC](SENTENCES[:1])})


@pytest.mark.server
def test_api_key(server):
    c = client(server)
    assert c.is_server_live() and c.is_server_ready()  # health stays open, as REST's /v2/health/*
    for headers in (None, {"authorization": "Bearer wrong"}, {"x-api-key": "s3cret-ke"}):
        for call in (lambda: c.get_server_metadata(headers=headers), lambda: c.is_model_ready(TC, headers=headers),
                     lambda: c.get_model_config(TC, headers=headers)):
            with pytest.raises(Exception) as e:
                call()
            assert status_of(e.value)[0] == "UNAUTHENTICATED" and "api key" in status_of(e.value)[1].lower()
    assert c.get_server_metadata(headers={"x-api-key": "s3cret-key"}).name == "distilbert-deploy"
    assert c.is_model_ready(TC, headers=KEY)


@pytest.mark.server
def test_metrics_count_grpc_requests(server):
    c = client(server)
    before = server.metrics(REST_KEY)
    for xs in (SENTENCES[:1], SENTENCES[1:3]):
        c.infer(TC, infer_inputs({"text": texts(xs)}), headers=KEY)
    for model, xs in ((TC, [""]), ("nope", ["hi"]), (TC, ["x" * 70000])):  # the last over --max-body-bytes
        with pytest.raises(Exception):
            c.infer(model, infer_inputs({"text": texts(xs)}), headers=KEY)
    after = server.metrics(REST_KEY)
    requests = "distilbert_deploy_requests_total"
    assert delta(after, before, requests, model=TC, endpoint="grpc_infer", status="RESOURCE_EXHAUSTED") == 1
    assert delta(after, before, "distilbert_deploy_errors_total", model=TC, kind="too_large") == 1
    assert delta(after, before, requests, model=TC, endpoint="grpc_infer", status="OK") == 2
    assert delta(after, before, requests, model=TC, endpoint="grpc_infer", status="INVALID_ARGUMENT") == 1
    assert delta(after, before, requests, model="_unknown", endpoint="grpc_infer", status="NOT_FOUND") == 1
    assert delta(after, before, "distilbert_deploy_errors_total", model=TC, kind="bad_input") == 1
    assert delta(after, before, "distilbert_deploy_errors_total", model="_unknown", kind="not_found") == 1
    assert delta(after, before, "distilbert_deploy_request_seconds_count", model=TC, endpoint="grpc_infer") == 4
    assert delta(after, before, "distilbert_deploy_queue_wait_seconds_count", model=TC) == 3  # one per queued text
    assert after[("distilbert_deploy_inflight_requests", ())] == 0


# --- backpressure and drain ------------------------------------------------------------------------------------

INFLIGHT = ("distilbert_deploy_inflight_requests", ())


@pytest.mark.server
def test_burst_beyond_the_queue(server, inproc):
    """20 one-text requests at once while the runtime holds its batch (the gate is shut): the queue fills to its 8
    rows, every other request is answered RESOURCE_EXHAUSTED at once (with retry-after, as REST's 503); when the
    gate opens every accepted request gets its own right answer, and nothing is lost."""
    import grpc
    import tritonclient.grpc.aio as aio
    n, depth = 20, ("distilbert_deploy_queue_depth", (("model", TC),))
    sent = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
    want = {s: inproc[TC]([s]) for s in SENTENCES}
    before = server.metrics(REST_KEY)

    async def main():
        c = aio.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            server.gate.unlink()
            try:
                tasks = [asyncio.ensure_future(c.infer(TC, infer_inputs({"text": texts([s])}), headers=KEY))
                         for s in sent]
                end = time.monotonic() + 60  # bounds a hang only
                while True:  # settled: each request refused, or held (one batch in the runtime, the rest queued)
                    m = await asyncio.to_thread(server.metrics, REST_KEY)
                    if m[depth] == MAX_QUEUE and m[INFLIGHT] == n - sum(t.done() for t in tasks):
                        break
                    assert time.monotonic() < end, f"the burst never settled: {m[depth]} queued, {m[INFLIGHT]} held"
                    await asyncio.sleep(0.01)
                held = int(m[INFLIGHT])
                refused_while_held = [t.exception() for t in tasks if t.done()]
                with pytest.raises(grpc.RpcError) as e:  # one more, through the stub: it sees the trailers
                    await asyncio.to_thread(stub(server).ModelInfer, build_request(TC, [txt("text", ["hi"])]),
                                            metadata=tuple(KEY.items()), timeout=60)
                assert e.value.code().name == "RESOURCE_EXHAUSTED"
                assert ("retry-after", "1") in e.value.trailing_metadata()
            finally:
                server.gate.touch()
            return held, refused_while_held, await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await c.close()

    held, refused, results = asyncio.run(asyncio.wait_for(main(), 120))
    after = server.metrics(REST_KEY)
    assert MAX_QUEUE + 1 <= held <= MAX_QUEUE + 4  # the queue's rows + the batch (max 4) held in the runtime
    assert len(refused) == n - held and all(e is not None for e in refused)
    errors = [status_of(r) for r in results if isinstance(r, Exception)]
    assert len(errors) == n - held and all(c == "RESOURCE_EXHAUSTED" and "queue is full" in m for c, m in errors)
    for s, r in zip(sent, results):
        if not isinstance(r, Exception):
            check_inproc(as_arrays(r, ["answer"]), {"answer": want[s]})
    assert delta(after, before, "distilbert_deploy_errors_total", model=TC, kind="queue_full") == n - held + 1
    for status, count in (("OK", held), ("RESOURCE_EXHAUSTED", n - held + 1)):
        assert delta(after, before, "distilbert_deploy_requests_total", model=TC, endpoint="grpc_infer",
                     status=status) == count
    assert after[depth] == 0 and after[INFLIGHT] == 0


@pytest.mark.server
def test_sigterm_drains_grpc(paths, inproc, tmp_path):
    """SIGTERM while gRPC requests are held in the runtime (the gate): ServerReady turns false, a new request gets
    UNAVAILABLE, every held request is answered correctly once the gate opens, and the process exits 0. A server
    that does not drain is gone within HOLD_S; a draining one waits up to --drain-timeout-s (60 s)."""
    import tritonclient.grpc.aio as aio
    HOLD_S = 1.0
    srv = grpc_server([paths[TC], "--max-batch-size", "1", "--threads", "1", "--max-queue", "64",
                       "--drain-timeout-s", "60"], tmp_path / "server.log", tmp_path / "gate")
    name, clients = paths[TC].name, 6
    want = inproc[TC](SENTENCES[:3])

    async def main():
        c = aio.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")
        try:
            srv.gate.unlink()
            try:
                tasks = [asyncio.ensure_future(c.infer(name, infer_inputs({"text": texts(SENTENCES[:3])})))
                         for _ in range(clients)]
                end = time.monotonic() + 60  # bounds a hang only: held at the gate, they all get in
                while (await asyncio.to_thread(srv.metrics))[INFLIGHT] < clients:
                    assert time.monotonic() < end, f"the requests were never all in flight:\n{srv.log}"
                    await asyncio.sleep(0.01)
                srv.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(HOLD_S)  # the drain is under way: up, answering, refusing new work
                alive = srv.proc.poll() is None and await c.is_server_live()
                ready = await c.is_server_ready()
                try:
                    await c.infer(name, infer_inputs({"text": texts(["too late"])}))
                    late = ("OK", "")
                except Exception as e:  # noqa: BLE001 - the code is checked below
                    late = status_of(e)
                running = [t.done() for t in tasks]
            finally:
                srv.gate.touch()
            return alive, ready, late, running, await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await c.close()

    with srv:
        srv.wait_ready()
        alive, ready, late, running, results = asyncio.run(asyncio.wait_for(main(), 120))
        assert srv.proc.wait(60) == 0, srv.log
    assert late[0] == "UNAVAILABLE" and "shutting down" in late[1], late
    assert alive and ready is False and running == [False] * clients
    for r in results:  # every accepted request answered, correctly
        assert not isinstance(r, Exception), r
        check_inproc(as_arrays(r, ["answer"]), {"answer": want})


# --- no server: the codec and the import rules -----------------------------------------------------------------


def test_stubs_coexist_with_tritonclient_and_stay_out_of_the_rest_of_the_service():
    """Our stubs register `inference.*` in a pool of their own: tritonclient.grpc's (the default pool) imports beside
    them in either order, and the two talk over the wire. Nothing else in the service imports grpc or protobuf (Ray's
    venv has protobuf 7)."""
    rest = ("import sys, runtimes, runtimes.serving.app, runtimes.serving.server, runtimes.serving.dataplane; "
            "bad = [m for m in sys.modules if m.startswith(('grpc', 'google.protobuf'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", rest], check=True, timeout=120)
    for first, second in (("tritonclient.grpc", "runtimes.serving.grpc_oip"),
                          ("runtimes.serving.grpc_oip", "tritonclient.grpc")):
        code = (f"import {first}, {second}; from runtimes.serving.grpc_oip import pb; "
                "from tritonclient.grpc import service_pb2 as t; from google.protobuf import descriptor_pool; "
                "assert pb.DESCRIPTOR.pool is not descriptor_pool.Default(); "
                "r = t.ModelInferRequest.FromString(pb.ModelInferRequest(model_name='m', raw_input_contents=[b'x'])"
                ".SerializeToString()); assert (r.model_name, list(r.raw_input_contents)) == ('m', [b'x'])")
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_codec_reads_every_contents_kind():
    pytest.importorskip("grpc")
    from runtimes.errors import InputError
    from runtimes.serving.grpc_oip import encode_infer, parse_infer, pb

    req = pb.ModelInferRequest(model_name="m", id="r1")
    t = req.inputs.add(name="flags", datatype="BOOL", shape=[2])
    t.contents.bool_contents.extend([True, False])
    req.inputs.add(name="small", datatype="INT8", shape=[1, 2]).contents.int_contents.extend([-3, 7])
    req.inputs.add(name="x", datatype="FP64", shape=[1]).contents.fp64_contents.append(0.25)
    req.parameters["top_k"].int64_param = 2
    req.parameters["truncation"].bool_param = False
    req.parameters["aggregation_strategy"].string_param = "simple"
    req.outputs.add(name="label")
    got = parse_infer(req)
    assert got.id == "r1" and got.outputs == {"label": True}
    assert got.parameters == {"top_k": 2, "truncation": False, "aggregation_strategy": "simple"}
    assert got.inputs["flags"].tolist() == [True, False] and got.inputs["small"].dtype == np.int8
    assert got.inputs["small"].tolist() == [[-3, 7]] and got.inputs["x"].tolist() == [0.25]

    half = pb.ModelInferRequest(model_name="m", raw_input_contents=[np.float16([1.5, -2]).tobytes()])
    half.inputs.add(name="h", datatype="FP16", shape=[2])
    assert parse_infer(half).inputs["h"].tolist() == [1.5, -2.0]
    half.ClearField("raw_input_contents")
    with pytest.raises(InputError, match="FP16, which has no typed contents"):
        parse_infer(half)
    wide = pb.ModelInferRequest(model_name="m")
    wide.inputs.add(name="small", datatype="INT8", shape=[1]).contents.int_contents.append(300)
    with pytest.raises(InputError, match="do not fit INT8"):
        parse_infer(wide)

    out = encode_infer("m", "r1", {"label": np.array([b"pos", "n\u00e9g".encode()], dtype=np.object_),
                                   "score": np.float32([0.5, 0.25])}, {"truncated_inputs": [0, 3]})
    assert (out.model_name, out.model_version, out.id) == ("m", "1", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in out.outputs] == [("label", "BYTES", [2]),
                                                                          ("score", "FP32", [2])]
    assert out.raw_output_contents[0] == b"\x03\0\0\0pos\x04\0\0\0n\xc3\xa9g"
    assert np.frombuffer(out.raw_output_contents[1], "<f4").tolist() == [0.5, 0.25]
    assert out.parameters["truncated_inputs"].string_param == "0,3"


def test_a_taken_grpc_port_stops_the_start_before_any_model_loads(paths, tmp_path):
    """Another process listening on --grpc-port: exit 2 with the flag named, before the model is loaded or warmed."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        started = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "distilbert_deploy.cli", "serve", str(paths[TC]),
                            "--port", str(free_port()), "--grpc-port", str(taken)],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"--grpc-port {taken}" in r.stderr and "in use" in r.stderr, r.stderr
    assert "warmed in" not in r.stderr + r.stdout, "the model was loaded before the port was checked"
    assert time.monotonic() - started < 60
