"""The load: closed-loop users, each sending one held-out tweet per request and waiting for the answer before the
next (so the concurrency is the user count), in the engine's own protocol (SERVE_BENCH_PROTOCOL, one of PROTOCOLS:
our task endpoint or /v1/embeddings, OIP v2 REST or gRPC with one BYTES `text`, infinity's /classify or
/embeddings); every answer is checked. Run by runner.py as
`python -m locust -f locustfile.py --headless ...`; everything else comes from SERVE_BENCH_* environment variables.

Bounded twice over: the step stops at warm-up + duration seconds (a timer greenlet; `-t` is a backstop), or once
`SERVE_BENCH_MAX_REQUESTS` measured requests were sent, whichever comes first. Requests that start in the warm-up
are named `warmup`, the rest `predict`; every request (start time, latency, ok) is written to
SERVE_BENCH_SAMPLES when the test stops, so the runner computes its figures from the raw samples and keeps
locust's own statistics as a cross-check: its requests CSV (the `--csv` PREFIX_stats.csv format, by locust's own
StatsCSV) is written to SERVE_BENCH_STATS_CSV when locust quits. (`--csv` itself is not used: its writer runs once a
second and locust 2.47 makes no final write, so its file misses the last second.)"""
from __future__ import annotations

import csv
import itertools
import json
import os
import time

import gevent
from locust import FastHttpUser, User, constant, events, task
from locust.exception import StopUser
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

with open(os.environ["SERVE_BENCH_TEXTS"], encoding="utf-8") as _f:
    TEXTS = json.load(_f)
MODEL = os.environ["SERVE_BENCH_MODEL"]
WARMUP_S = float(os.environ["SERVE_BENCH_WARMUP_S"])
DURATION_S = float(os.environ["SERVE_BENCH_DURATION_S"])
MAX_REQUESTS = int(os.environ["SERVE_BENCH_MAX_REQUESTS"])
SAMPLES = os.environ["SERVE_BENCH_SAMPLES"]
STATS_CSV = os.environ["SERVE_BENCH_STATS_CSV"]
PROTOCOL = os.environ.get("SERVE_BENCH_PROTOCOL", "task")  # one of PROTOCOLS
# protocol -> (path, body(text), the one answer of a response doc or None, what a good answer is)
PROTOCOLS = {
    "task": (f"/v1/models/{MODEL}/predict", lambda t: {"inputs": t},
             lambda d: d[0] if isinstance(d, list) and len(d) == 1 else None, "label"),
    "oip-text": (f"/v2/models/{MODEL}/infer",
                 lambda t: {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [t]}]},
                 lambda d: _oip_answer({o["name"]: o for o in d.get("outputs", [])}.get("answer", {}).get("data")),
                 "label"),
    "oip-grpc-text": ("ModelInfer", None, None, "label"),  # GrpcClient below
    "infinity-classify": ("/classify", lambda t: {"input": [t], "model": MODEL},
                          lambda d: _top(d.get("data")), "label"),
    "openai-embed": ("/v1/embeddings", lambda t: {"input": t, "model": MODEL},
                     lambda d: _embedding(d.get("data")), "embedding"),
    "openai-embed-infinity": ("/embeddings", lambda t: {"input": [t], "model": MODEL},
                              lambda d: _embedding(d.get("data")), "embedding"),
}


def _oip_answer(data):
    """The ensemble's / KServe model's `answer` output: one JSON string."""
    return json.loads(data[0]) if isinstance(data, list) and len(data) == 1 else None


def _top(data):
    """infinity /classify: [[{label, score}, ...]] for one input, every label scored."""
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], list) and data[0]:
        return max(data[0], key=lambda x: x.get("score", 0))
    return None


def _embedding(data):
    """OpenAI embeddings: [{"embedding": [floats], "index": 0, ...}] for one input."""
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        v = data[0].get("embedding")
        if isinstance(v, list) and v and isinstance(v[0], (int, float)):
            return {"embedding": len(v)}
    return None


def good(answer, kind: str) -> bool:
    return isinstance(answer, dict) and kind in answer


_next_text = itertools.count()
_state = {"t0": None, "warm_end": None, "stop": None, "measured": 0, "done": False}
_samples: list[list] = []  # [start epoch s, latency ms, ok 0/1, phase 0 warm-up / 1 measured]
_errors: list[str] = []  # the first few failures' messages
MAX_ERROR_MESSAGES = 5


@events.test_start.add_listener
def _start(environment, **_):
    now = time.time()
    _state.update(t0=now, warm_end=now + WARMUP_S, stop=now + WARMUP_S + DURATION_S)
    gevent.spawn_later(WARMUP_S + DURATION_S, _quit, environment)


@events.request.add_listener
def _record(name, response_time, exception, start_time=None, **_):
    _samples.append([start_time, response_time, 0 if exception else 1, 1 if name == "predict" else 0])
    if exception and len(_errors) < MAX_ERROR_MESSAGES:
        _errors.append(str(exception)[:300])


@events.test_stop.add_listener
def _write(environment, **_):
    doc = {**{k: _state[k] for k in ("t0", "warm_end", "stop")}, "users": environment.parsed_options.num_users
           if environment.parsed_options else None, "budget_exhausted": _state["measured"] >= MAX_REQUESTS,
           "error_messages": _errors, "samples": _samples}
    tmp = SAMPLES + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, SAMPLES)


@events.quitting.add_listener
def _write_stats(environment, **_):
    tmp = STATS_CSV + ".tmp"
    with open(tmp, "w", newline="") as f:
        StatsCSV(environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(f))
    os.replace(tmp, STATS_CSV)


def _quit(environment) -> None:
    if not _state["done"]:
        _state["done"] = True
        environment.runner.quit()


def _next_request(user) -> tuple[str, str]:
    """(request name, text) of the next request, or StopUser when the step's time or count bound is reached."""
    now = time.time()
    if _state["done"] or now >= _state["stop"]:
        raise StopUser()
    measured = now >= _state["warm_end"]
    if measured:
        if _state["measured"] >= MAX_REQUESTS:  # the count bound: stop the whole step
            gevent.spawn(_quit, user.environment)
            raise StopUser()
        _state["measured"] += 1
    return "predict" if measured else "warmup", TEXTS[next(_next_text) % len(TEXTS)]


if PROTOCOL == "oip-grpc-text":
    import grpc
    import grpc.experimental.gevent as grpc_gevent
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    grpc_gevent.init_gevent()  # grpc's own threads cooperate with gevent's loop
    GRPC_TARGET = os.environ["SERVE_BENCH_GRPC_TARGET"]

    class GrpcClient(User):
        """OIP v2 gRPC ModelInfer (KServe's and Triton's `inference.GRPCInferenceService`), one BYTES `text`."""
        wait_time = constant(0)

        def on_start(self):
            self.channel = grpc.insecure_channel(GRPC_TARGET)
            self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

        def on_stop(self):
            self.channel.close()

        @task
        def predict(self):
            name, text = _next_request(self)
            req = service_pb2.ModelInferRequest(model_name=MODEL)
            inp = req.inputs.add(name="text", datatype="BYTES", shape=[1])
            inp.contents.bytes_contents.append(text.encode())
            start, t = time.time(), time.perf_counter()
            exc, size = None, 0
            try:
                r = self.stub.ModelInfer(req, timeout=30)
                size = r.ByteSize()
                out = next((o for o in r.outputs if o.name == "answer"), None)
                if out is not None and out.contents.bytes_contents:
                    data = [x.decode() for x in out.contents.bytes_contents]
                elif out is not None and r.raw_output_contents:
                    raw = r.raw_output_contents[list(r.outputs).index(out)]
                    data = [raw[4:4 + int.from_bytes(raw[:4], "little")].decode()]
                else:
                    data = None
                if not good(_oip_answer(data), "label"):
                    exc = ValueError(f"not a text-classification answer: {str(r)[:200]}")
            except grpc.RpcError as e:
                exc = e
            self.environment.events.request.fire(request_type="grpc", name=name, start_time=start,
                                                 response_time=(time.perf_counter() - t) * 1e3,
                                                 response_length=size, exception=exc, context={})
else:
    PATH, BODY, ANSWER, KIND = PROTOCOLS[PROTOCOL]

    class Client(FastHttpUser):
        wait_time = constant(0)  # closed loop: the next request goes when the answer is in

        @task
        def predict(self):
            name, text = _next_request(self)
            with self.client.post(PATH, json=BODY(text), name=name, catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")
                    return
                try:
                    ok = good(ANSWER(r.json()), KIND)
                except (ValueError, AttributeError, KeyError, TypeError):
                    ok = False
                if not ok:
                    r.failure(f"not a {'text-classification answer' if KIND == 'label' else 'one embedding'}: "
                              f"{(r.text or '')[:200]}")
