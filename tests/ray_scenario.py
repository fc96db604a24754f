"""Run by tests/test_ray_serve.py with .venv-ray's python inside a private network namespace (everything on the
namespace's own loopback). Starts `distilbert-deploy serve --engine ray --replicas 2`, checks its answers against
the in-process runtime and pipeline, kills a replica under a bounded load, waits for Ray to replace it, shuts the
service down with SIGTERM and looks for leftover Ray processes. Prints one JSON line of findings; asserts nothing
itself (the test does).

    python tests/ray_scenario.py PORT TC_ARTIFACT QA_ARTIFACT"""
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from runtimes.errors import DeployError
from runtimes.procs import ServerProcess

PORT, TC, QA = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
BIN = Path(sys.executable).parent
TEXTS = ["The movie was absolutely wonderful, I loved every minute of it!", "Terrible service.", "Short one"]
CONTEXT = "The Amazon rainforest covers much of the Amazon basin of South America. Most of it is in Brazil."
QUESTIONS = ["Which country holds most of the forest?", "What does the rainforest cover?"]
LOAD_REQUESTS, LOAD_THREADS, LOAD_SECONDS = 240, 4, 90


def replicas() -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::ServeReplica"):
                out.append(int(p.name))
    return sorted(out)


def ray_processes() -> list[str]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (p / "stat").read_text().split()[2]
            except OSError:
                continue
            if state != "Z" and any(k in cmd for k in ("raylet", "gcs_server", "ray::", "ray/_private")):
                out.append(f"{p.name} {cmd[:80]}")
    return out


def post(path: str, body: dict) -> tuple[int, object]:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    try:
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw or b"null")
        except ValueError:  # e.g. a proxy's plain-text error page
            return r.status, raw.decode(errors="replace")[:200]
    finally:
        c.close()


def main() -> dict:
    from runtimes.pipeline import load_pipeline

    found: dict = {}
    server = ServerProcess([BIN / "distilbert-deploy", "serve", "--engine", "ray", "--replicas", "2", TC, QA,
                            "--name", "tc", "--name", "qa", "--port", PORT, "--max-batch-size", "8"],
                           Path("ray-serve.log"), f"http://127.0.0.1:{PORT}/v2/health/ready", name="Ray Serve",
                           ready_timeout_s=180, stop_timeout_s=90)
    try:
        server.spawn().wait_ready()
    except DeployError:
        server.stop()
        found["ready"] = False
        return found
    found["ready"], found["start_s"] = True, round(server.ready_s, 1)
    found["replicas"] = len(replicas())
    tc, qa = load_pipeline(TC), load_pipeline(QA)

    # tritonclient: raw tensors and text, equal to the in-process runtime / pipeline
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{PORT}")
    enc = tc.tokenizer(TEXTS, padding=True, return_tensors="np")
    feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    inputs = []
    for name, arr in feed.items():
        t = httpclient.InferInput(name, list(arr.shape), "INT64")
        t.set_data_from_numpy(arr)
        inputs.append(t)
    got = client.infer("tc", inputs).as_numpy("logits")
    found["raw_max_abs_diff"] = float(np.max(np.abs(got - tc.runtime.infer(feed)["logits"])))
    t = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    t.set_data_from_numpy(np.array([x.encode() for x in TEXTS], dtype=np.object_))
    answers = [json.loads(a) for a in client.infer("tc", [t]).as_numpy("answer")]
    found["text_equal"] = _close(answers, tc(TEXTS))
    want_qa = qa([{"question": q, "context": CONTEXT} for q in QUESTIONS])
    status, body = post("/v1/models/qa/predict", {"inputs": [{"question": q, "context": CONTEXT} for q in QUESTIONS]})
    found["task_endpoint"] = [status, _close(body, want_qa)]
    status, body = post("/v1/models/tc/predict", {"inputs": ["   "]})
    found["bad_input_status"] = status

    # kill one replica under a bounded load: every 200 must be the right answer
    want = tc(TEXTS)
    results: list = []
    lock = threading.Lock()
    deadline = time.monotonic() + LOAD_SECONDS

    def worker(n: int) -> None:
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            try:
                status, body = post("/v1/models/tc/predict", {"inputs": TEXTS})
                outcome = (status, status == 200 and _close(body, want))
            except Exception as e:  # every failure is a finding, none may end the thread
                outcome = (type(e).__name__, False)
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, args=(LOAD_REQUESTS // LOAD_THREADS,)) for _ in range(LOAD_THREADS)]
    for th in threads:
        th.start()
    while len(results) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = replicas()[0]
    os.kill(victim, signal.SIGKILL)
    found["killed_after_requests"] = len(results)
    for th in threads:
        th.join()
    found["load"] = {"sent": len(results), "ok_right": sum(1 for s, ok in results if s == 200 and ok),
                     "ok_wrong": sum(1 for s, ok in results if s == 200 and not ok),
                     "errors": sorted({str(s) for s, _ in results if s != 200}),
                     "error_count": sum(1 for s, _ in results if s != 200)}
    t1 = time.monotonic()
    while time.monotonic() - t1 < 90 and not (len(now := replicas()) == 2 and victim not in now):
        time.sleep(0.5)
    found["replaced_within_s_after_load"] = round(time.monotonic() - t1, 1) if len(replicas()) == 2 else None
    found["after_replacement"] = post("/v1/models/tc/predict", {"inputs": TEXTS})[0]

    # shutdown: exit code, then no Ray process left
    code = server.stop()
    found["exit_code"] = "timeout" if code is None else code
    t2 = time.monotonic()
    while time.monotonic() - t2 < 30 and ray_processes():
        time.sleep(0.5)
    found["leftover"] = ray_processes()
    return found


def _close(got, want, tol=1e-4) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_close(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(_close(g, w) for g, w in zip(got, want))
    if isinstance(want, float):
        return isinstance(got, (int, float)) and abs(got - want) <= tol
    return got == want


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
