"""The load: closed-loop users, each sending one held-out tweet per request to the task endpoint and waiting for
the answer before the next (so the concurrency is the user count). Run by runner.py as
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
from locust import FastHttpUser, constant, events, task
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
PROTOCOL = os.environ.get("SERVE_BENCH_PROTOCOL", "task")  # task: our /v1 endpoint; oip-text: a Triton text ensemble
PATH = f"/v1/models/{MODEL}/predict" if PROTOCOL == "task" else f"/v2/models/{MODEL}/infer"


def _body(text: str) -> dict:
    if PROTOCOL == "task":
        return {"inputs": text}
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}


def _answer(doc):
    """The one answer of a response: our [answer], or the ensemble's `answer` output (one JSON string)."""
    if PROTOCOL == "task":
        return doc[0] if isinstance(doc, list) and len(doc) == 1 else None
    out = {o["name"]: o for o in doc.get("outputs", [])}.get("answer", {}).get("data", [])
    return json.loads(out[0]) if len(out) == 1 else None

_next_text = itertools.count()
_state = {"t0": None, "warm_end": None, "stop": None, "measured": 0, "done": False}
_samples: list[list] = []  # [start epoch s, latency ms, ok 0/1, phase 0 warm-up / 1 measured]


@events.test_start.add_listener
def _start(environment, **_):
    now = time.time()
    _state.update(t0=now, warm_end=now + WARMUP_S, stop=now + WARMUP_S + DURATION_S)
    gevent.spawn_later(WARMUP_S + DURATION_S, _quit, environment)


@events.request.add_listener
def _record(name, response_time, exception, start_time=None, **_):
    _samples.append([start_time, response_time, 0 if exception else 1, 1 if name == "predict" else 0])


@events.test_stop.add_listener
def _write(environment, **_):
    doc = {**{k: _state[k] for k in ("t0", "warm_end", "stop")}, "users": environment.parsed_options.num_users
           if environment.parsed_options else None, "budget_exhausted": _state["measured"] >= MAX_REQUESTS,
           "samples": _samples}
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


class Client(FastHttpUser):
    wait_time = constant(0)  # closed loop: the next request goes when the answer is in

    @task
    def predict(self):
        now = time.time()
        if _state["done"] or now >= _state["stop"]:
            raise StopUser()
        measured = now >= _state["warm_end"]
        if measured:
            if _state["measured"] >= MAX_REQUESTS:  # the count bound: stop the whole step
                gevent.spawn(_quit, self.environment)
                raise StopUser()
            _state["measured"] += 1
        text = TEXTS[next(_next_text) % len(TEXTS)]
        with self.client.post(PATH, json=_body(text), name="predict" if measured else "warmup",
                              catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")
                return
            try:
                answer = _answer(r.json())
                ok = isinstance(answer, dict) and "label" in answer
            except ValueError:
                ok = False
            if not ok:
                r.failure(f"not a text-classification answer: {(r.text or '')[:200]}")
