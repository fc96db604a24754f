"""One run: the in-process ceiling, then per service configuration (batching on, then off) one server subprocess
started, waited for (/v2/health/ready), driven by one headless locust process per concurrency step, and stopped with
SIGTERM; then the ceiling again. The batching server, once ready and before its locust steps, also gets the paired
c=1 latency measurement (measure_paired: in-process and HTTP calls interleaved). Figures come from the raw
per-request samples the locustfile writes; locust's CSV and the server's /metrics are parsed and kept beside them."""
from __future__ import annotations

import csv
import datetime as _dt
import http.client
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from runtimes.artifact import read_manifest
from runtimes.errors import ConfigError, DeployError
from runtimes.procs import ServerProcess, free_port

from . import peers
from .config import HOST, MODEL_NAME, ServeBenchConfig
from .peers import REPO, serve_args
from .report import (BATCHING, BATCHING_GRPC, NO_BATCHING, P50_SLACK_MS, Ceiling, Paired, PeerFailure,
                     ServeBenchReport, ServerRun, Step, judge, paired_stats, peer_targets)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
PERCENTILE_METHOD = "linear"  # numpy's default, as benchmarks/bench


class ServeBenchError(DeployError):
    """The benchmark could not measure: the server did not start or become ready, or the load tool failed."""


# ------------------------------------------------------------------------------------------ pure parsing

def parse_locust_csv(path: str | os.PathLike, name: str = "predict") -> dict:
    """Locust's requests CSV (the `--csv` PREFIX_stats.csv format) row for request `name`: requests, failures, median/avg/min/max ms, rps and the
    p50/p90/p99 columns (whole ms as locust rounds them). {} when the file has no such row (no request was made)."""
    path = Path(path)
    if not path.is_file():
        raise ServeBenchError(f"locust wrote no stats file '{path}'. It failed before the test ran; its output is "
                              f"in the step's log")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"Name", "Request Count", "Failure Count", "50%", "90%", "99%"} <= set(rows[0]):
        raise ServeBenchError(f"'{path}' is not a locust stats CSV (columns {sorted(rows[0])}); expected Name, "
                              f"Request Count, Failure Count, 50%, 90%, 99%")
    row = next((r for r in rows if r["Name"] == name), None)
    if row is None:
        return {}

    def num(key, kind=float):
        v = row.get(key, "")
        return None if v in ("", "N/A", None) else kind(float(v))

    return {"requests": num("Request Count", int), "failures": num("Failure Count", int),
            "median_ms": num("Median Response Time"), "mean_ms": num("Average Response Time"),
            "min_ms": num("Min Response Time"), "max_ms": num("Max Response Time"),
            "rps_since_start": num("Requests/s"), "p50_ms": num("50%"), "p90_ms": num("90%"), "p99_ms": num("99%")}


def parse_prometheus(text: str) -> list[tuple[str, dict, float]]:
    """Prometheus text exposition -> (sample name, labels, value) for every sample, by prometheus_client's own
    parser (sample names as exposed: a histogram's `_bucket`/`_count`/`_sum`, a counter's `_total`)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return [(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text) for s in family.samples]
    except ValueError as e:
        raise ServeBenchError(f"the /metrics answer is not Prometheus text exposition ({e})") from None


def metric(samples: list[tuple[str, dict, float]], name: str, **labels) -> float:
    """The sum of every sample called `name` whose labels include `labels`."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


SERVER_SERIES = {  # figure -> (sum sample, count sample, extra labels)
    "batch": ("distilbert_deploy_batch_size_sum", "distilbert_deploy_batch_size_count", {}),
    "inference": ("distilbert_deploy_inference_seconds_sum", "distilbert_deploy_inference_seconds_count", {}),
    "wait": ("distilbert_deploy_queue_wait_seconds_sum", "distilbert_deploy_queue_wait_seconds_count", {}),
    "tokens": ("distilbert_deploy_batch_tokens_sum", "distilbert_deploy_batch_tokens_count", {}),
    "padding": ("distilbert_deploy_padding_tokens_sum", "distilbert_deploy_padding_tokens_count", {}),
    "request": ("distilbert_deploy_request_seconds_sum", "distilbert_deploy_request_seconds_count",
                {"endpoint": "predict"}),
}


def server_delta(before: list, after: list, model: str = MODEL_NAME) -> dict:
    """What the server did between two /metrics scrapes: batches, mean rows per batch, inference ms per batch,
    queue wait ms per row, padding share of the batch tokens, server time per request, errors by kind."""
    d = {}
    for key, (s, c, extra) in SERVER_SERIES.items():
        d[key] = (metric(after, s, model=model, **extra) - metric(before, s, model=model, **extra),
                  metric(after, c, model=model, **extra) - metric(before, c, model=model, **extra))
    per = lambda k, scale=1.0: d[k][0] / d[k][1] * scale if d[k][1] else None
    kinds = {lab.get("kind") for n, lab, _ in after if n == "distilbert_deploy_errors_total"}
    errors = {k: int(metric(after, "distilbert_deploy_errors_total", model=model, kind=k)
                     - metric(before, "distilbert_deploy_errors_total", model=model, kind=k)) for k in sorted(kinds)}
    return {"batches": int(d["batch"][1]), "rows": int(d["batch"][0]), "mean_batch_size": per("batch"),
            "mean_inference_ms": per("inference", 1e3), "mean_queue_wait_ms": per("wait", 1e3),
            "padding_fraction": d["padding"][0] / d["tokens"][0] if d["tokens"][0] else None,
            "mean_request_ms": per("request", 1e3), "requests": int(d["request"][1]),
            "errors": {k: v for k, v in errors.items() if v}}


def summarize_step(doc: dict, concurrency: int) -> dict:
    """The step's figures from the locustfile's raw samples ({warm_end, stop, samples: [[start epoch s, latency
    ms, ok, measured]]}): throughput = successful answers that completed inside the measured window (end of warm-up
    .. last answer) / its length; percentiles (numpy linear) over the requests started in the window; errors =
    failed requests of the whole step."""
    s = np.asarray(doc["samples"], dtype=np.float64).reshape(-1, 4)
    start, lat, ok, measured = s[:, 0], s[:, 1], s[:, 2] > 0, s[:, 3] > 0
    end = start + lat / 1e3
    warm_end = float(doc["warm_end"])
    window_end = float(end.max()) if end.size else warm_end
    window = window_end - warm_end
    done = ok & (end >= warm_end) & (end <= window_end)
    m = lat[measured]
    if m.size == 0:
        raise ServeBenchError(f"the step at concurrency {concurrency} has no measured request: the server answered "
                              f"nothing after the warm-up. Check the step's log and the server log")
    p50, p90, p99 = np.percentile(m, [50, 90, 99], method=PERCENTILE_METHOD)
    return {"concurrency": concurrency, "requests": int(m.size), "errors": int((~ok).sum()),
            "warmup_requests": int((~measured).sum()), "window_s": window,
            "throughput_rps": float(done.sum() / window) if window > 0 else 0.0, "mean_ms": float(m.mean()),
            "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "max_ms": float(m.max()),
            "budget_exhausted": bool(doc.get("budget_exhausted", False)),
            "error_messages": tuple(doc.get("error_messages", ())),
            "latencies_ms": tuple(round(float(x), 3) for x in m)}


# ------------------------------------------------------------------------------------------ the server

def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (Ray's raylet, GCS and replicas; Triton's python stubs), from /proc."""
    parent: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree, frontier = [pid], {pid}
    while frontier:
        frontier = {c for c, pp in parent.items() if pp in frontier}
        tree += frontier
    return tree


def tree_cpu_s(pid: int) -> float | None:
    times = [process_cpu_s(p) for p in process_tree(pid)]
    return sum(t for t in times if t is not None) if times and times[0] is not None else None


def tree_rss_mb(pid: int) -> float | None:
    total = 0
    for p in process_tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return round(total / 2**20, 1) if total else None


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children (each locust process, once it ended)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class Server(ServerProcess):
    """`distilbert-deploy serve` (or a peer) as a subprocess on 127.0.0.1: started, ready, checked to listen on
    loopback only, stopped with SIGTERM (killed only when it does not exit in time). Use as a context manager so it
    never outlives the run."""

    def __init__(self, cfg: ServeBenchConfig, max_batch_size: int, log_path: Path, peer: str | None = None,
                 task: str = "text-classification"):
        self.cfg, self.peer = cfg, peer
        self.port = cfg.port if cfg.port and peer is None else free_port()
        self.launch = peers.launch(cfg, peer, max_batch_size, log_path.parent, self.port, free_port(), task)
        self.url, self.engine, self.model = self.launch.url, self.launch.engine, self.launch.model
        super().__init__(self.launch.argv, log_path, self.url + self.launch.ready_path, command=self.launch.command,
                         env=self.launch.env, cwd=self.launch.cwd, ready_timeout_s=cfg.ready_timeout_s,
                         stop_timeout_s=cfg.stop_timeout_s, error=ServeBenchError)
        self.sockets: list = []

    def __enter__(self) -> "Server":
        super().__enter__()
        try:
            from .netns import private_network

            self.sockets = peers.check_loopback(self.engine, process_tree(self.proc.pid), private_network())
        except BaseException:
            self.stop()
            raise
        return self

    def metrics(self) -> list | None:
        """Our service's /metrics samples; None for a peer (Ray's /metrics is one replica's, Triton has its own)."""
        if self.peer not in (None, peers.OURS_GRPC):
            return None
        code, text = _http_get(self.url + "/metrics")
        if code != 200:
            raise ServeBenchError(f"GET {self.url}/metrics answered {code}: {text[:200]}")
        return parse_prometheus(text)

    def cpu_s(self) -> float | None:
        return tree_cpu_s(self.proc.pid) if self.proc is not None else None

    def rss_mb(self) -> float | None:
        return tree_rss_mb(self.proc.pid) if self.proc is not None else None


# ------------------------------------------------------------------------------------------ paired c=1 latency

PAIRED_WHEN = "after the server was ready, before its locust steps"
HTTP_TIMEOUT_S = 30.0  # one paired request at most (a hung server ends the measurement's time bound late, not never)
MAX_ERROR_MESSAGES = 5


def check_answer(status: int, body: bytes) -> str | None:
    """None when the answer is a 200 text-classification answer to one text ([{"label": ..., ...}]), as the
    locustfile checks; otherwise why not."""
    if status != 200:
        return f"HTTP {status}: {body[:200].decode(errors='replace')}"
    try:
        answer = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        answer = None
    if isinstance(answer, list) and len(answer) == 1 and isinstance(answer[0], dict) and "label" in answer[0]:
        return None
    return f"not a text-classification answer: {body[:200].decode(errors='replace')}"


class _Client:
    """POST /v1/models/MODEL/predict over one persistent keep-alive connection (stdlib http.client, 127.0.0.1);
    a new connection only after a failed exchange."""

    def __init__(self, port: int):
        self.port, self.conn, self.connections = port, None, 0
        self.path = f"/v1/models/{MODEL_NAME}/predict"

    def connect(self) -> None:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=HTTP_TIMEOUT_S)
            self.conn.connect()  # outside any timing (http.client sets TCP_NODELAY)
            self.connections += 1

    def predict(self, text: str) -> tuple[float, str | None]:
        """(ms from sending the request to having read the whole answer, None or why it failed)."""
        body = json.dumps({"inputs": text}).encode()
        self.connect()
        t = time.perf_counter()
        try:
            self.conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return (time.perf_counter() - t) * 1e3, f"no answer: {type(e).__name__}: {e}"
        dt = (time.perf_counter() - t) * 1e3
        if r.will_close:
            self.close()
        return dt, check_answer(r.status, data)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _GrpcClient:
    """OIP v2 gRPC ModelInfer with one BYTES `text` (tritonclient's message classes, as the locust gRPC user) over
    one channel; a new channel only after a failed exchange."""

    def __init__(self, target: str, model: str):
        self.target, self.model, self.channel, self.stub, self.connections = target, model, None, None, 0

    def connect(self) -> None:
        if self.channel is None:
            import grpc
            from tritonclient.grpc import service_pb2, service_pb2_grpc

            self.grpc, self.pb = grpc, service_pb2
            self.channel = grpc.insecure_channel(self.target)
            grpc.channel_ready_future(self.channel).result(timeout=HTTP_TIMEOUT_S)  # outside any timing
            self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
            self.connections += 1

    def predict(self, text: str) -> tuple[float, str | None]:
        self.connect()
        req = self.pb.ModelInferRequest(model_name=self.model)
        req.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(text.encode())
        t = time.perf_counter()
        try:
            r = self.stub.ModelInfer(req, timeout=HTTP_TIMEOUT_S)
        except self.grpc.RpcError as e:
            dt = (time.perf_counter() - t) * 1e3
            self.close()
            return dt, f"gRPC {e.code().name}: {e.details()}"
        return (time.perf_counter() - t) * 1e3, check_grpc_answer(r)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = self.stub = None


def check_grpc_answer(r) -> str | None:
    """None when a ModelInferResponse's `answer` output is one JSON text-classification answer (typed or raw); the
    locustfile decodes the same way (it cannot be imported here: locust patches the importing process)."""
    out = next((o for o in r.outputs if o.name == "answer"), None)
    data = None
    if out is not None and out.contents.bytes_contents:
        data = out.contents.bytes_contents[0]
    elif out is not None and len(r.raw_output_contents) == len(r.outputs):
        raw = r.raw_output_contents[list(r.outputs).index(out)]
        data = raw[4:4 + int.from_bytes(raw[:4], "little")]
    try:
        answer = json.loads(data) if data is not None else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        answer = None
    if isinstance(answer, dict) and "label" in answer:
        return None
    return f"not a text-classification answer: {str(r)[:200]}"


def paired_client(server: "Server"):
    """The paired measurement's client for what this server's load speaks: gRPC for the gRPC run, else REST."""
    if server.launch.protocol == "oip-grpc-text":
        return _GrpcClient(f"{HOST}:{server.launch.grpc_port}", server.model)
    return _Client(server.port)


def measure_paired(cfg: ServeBenchConfig, server: "Server", texts: list[str], label: str = BATCHING) -> Paired:
    """The c=1 latency, side by side: this process loads the same artifact in-process (as ceiling.py does) and, for
    the held-out texts in order, one at a time, runs pairs of one in-process call `pipe(text)` and one request with the
    same text (HTTP predict, or gRPC ModelInfer against the gRPC run: paired_client); the in-process call goes first on even pairs and the request on odd ones (the order
    swapped every pair, warm-up included, cancels an order bias). Each is timed with perf_counter. After
    cfg.paired_warmup_pairs untimed pairs, pairs run until cfg.paired_max_pairs pairs or cfg.paired_max_s seconds,
    whichever comes first (at least one pair). A pair whose request failed is dropped and counted as an error."""
    from runtimes.base import RuntimeOptions
    from runtimes.pipeline import load_pipeline

    threads = cfg.effective_ceiling_threads
    pipe = load_pipeline(cfg.artifact, RuntimeOptions(threads=threads), batch_size=cfg.batch_size)
    client = paired_client(server)
    inproc, service, service_first, errors = [], [], [], []
    requests = 0
    k = 0  # pair index over warm-up and measured pairs: the order alternates across both

    def pair() -> tuple[float, float, bool, str | None]:
        nonlocal k, requests
        text = texts[k % len(texts)]
        http_first = k % 2 == 1
        k += 1
        requests += 1
        if http_first:
            s_ms, err = client.predict(text)
        t = time.perf_counter()
        pipe(text)
        i_ms = (time.perf_counter() - t) * 1e3
        if not http_first:
            s_ms, err = client.predict(text)
        return i_ms, s_ms, http_first, err

    try:
        client.connect()
        for _ in range(cfg.paired_warmup_pairs):
            if (err := pair()[3]) is not None:
                errors.append(err)
        attempted, t0 = 0, time.perf_counter()
        while attempted < cfg.paired_max_pairs and (attempted == 0 or time.perf_counter() - t0 < cfg.paired_max_s):
            i_ms, s_ms, first, err = pair()
            attempted += 1
            if err is not None:
                errors.append(err)
                continue
            inproc.append(i_ms)
            service.append(s_ms)
            service_first.append(first)
        duration = time.perf_counter() - t0
    finally:
        client.close()
        pipe.runtime.close()
    stats = paired_stats(inproc, service)
    return Paired(configuration=label, when=PAIRED_WHEN, threads=threads, protocol=server.launch.protocol, warmup_pairs=cfg.paired_warmup_pairs,
                  max_pairs=cfg.paired_max_pairs, max_s=cfg.paired_max_s,
                  stopped_by="count" if attempted >= cfg.paired_max_pairs else "time", duration_s=duration,
                  requests=requests, errors=len(errors), error_messages=tuple(errors[:MAX_ERROR_MESSAGES]),
                  connections=client.connections, **stats, inprocess_ms=tuple(round(x, 4) for x in inproc),
                  service_ms=tuple(round(x, 4) for x in service), service_first=tuple(service_first))


# ------------------------------------------------------------------------------------------ the load

def run_step(cfg: ServeBenchConfig, server: Server, concurrency: int, texts_path: Path, work: Path) -> Step:
    """One locust process at `concurrency` closed-loop users, bounded in time (the locustfile's timer, locust's -t,
    and a subprocess timeout) and in measured requests (cfg.max_requests)."""
    stats_csv = work / f"c{concurrency}-stats.csv"
    samples = work / f"c{concurrency}-samples.json"
    env = {**os.environ, "SERVE_BENCH_TEXTS": str(texts_path), "SERVE_BENCH_MODEL": server.model,
           "SERVE_BENCH_PROTOCOL": server.launch.protocol,
           "SERVE_BENCH_GRPC_TARGET": f"{HOST}:{server.launch.grpc_port}",
           "SERVE_BENCH_WARMUP_S": repr(cfg.warmup_s), "SERVE_BENCH_DURATION_S": repr(cfg.duration_s),
           "SERVE_BENCH_MAX_REQUESTS": str(cfg.max_requests), "SERVE_BENCH_SAMPLES": str(samples),
           "SERVE_BENCH_STATS_CSV": str(stats_csv)}
    limit = math.ceil(cfg.warmup_s + cfg.duration_s) + 10  # -t: a backstop behind the locustfile's own timer
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(concurrency),
            "-r", str(concurrency), "-t", f"{limit}s", "--stop-timeout", "0",
            "--host", server.url, "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    before = server.metrics()
    cpu0, load0, wall0 = server.cpu_s(), children_cpu_s(), time.monotonic()
    log_path = work / f"c{concurrency}-locust.log"
    with open(log_path, "wb") as log:
        try:
            rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
                                timeout=cfg.step_timeout_s).returncode
        except subprocess.TimeoutExpired:
            raise ServeBenchError(f"locust at concurrency {concurrency} ran past {cfg.step_timeout_s:.0f} s and was "
                                  f"killed; its log: {log_path}") from None
    wall, cpu1, load1 = time.monotonic() - wall0, server.cpu_s(), children_cpu_s()
    after = server.metrics()
    if rc != 0 or not samples.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise ServeBenchError(f"locust at concurrency {concurrency} failed (exit {rc}; samples written: "
                              f"{samples.is_file()}). Its log ({log_path}):\n{tail}")
    fig = summarize_step(json.loads(samples.read_text()), concurrency)
    delta = server_delta(before, after) if before is not None else {}
    # CPU use over the locust process's life (its start-up included), in cores: who used the shared CPUs
    delta["server_cpu_cores"] = (cpu1 - cpu0) / wall if cpu0 is not None and cpu1 is not None else None
    delta["load_generator_cpu_cores"] = (load1 - load0) / wall
    return Step(**fig, locust=parse_locust_csv(stats_csv), server=delta)


def run_config(cfg: ServeBenchConfig, label: str, max_batch_size: int, texts_path: Path, work: Path,
               log: Callable[[str], None], paired_texts: list[str] | None = None,
               peer: str | None = None, task: str = "text-classification") -> tuple[ServerRun, Paired | None]:
    """One server: started, (paired_texts given: the paired c=1 measurement first), the locust steps, SIGTERM."""
    work.mkdir(parents=True, exist_ok=True)
    paired = None
    with Server(cfg, max_batch_size, work / "server.log", peer, task) as server:
        log(f"{label}: server ready in {server.ready_s:.1f} s ({server.command})")
        if paired_texts is not None:
            paired = measure_paired(cfg, server, paired_texts, label)
            log(f"{label}: paired c=1 latency, {paired.pairs} pairs in {paired.duration_s:.1f} s: "
                + (f"service p50 {paired.service_p50_ms:.2f} ms, in-process p50 {paired.inprocess_p50_ms:.2f} ms, "
                   f"{paired.p50_diff_ms:+.2f} ms (median per-pair difference {paired.median_diff_ms:+.2f} ms)"
                   if paired.pairs else "no successful pair") + f", {paired.errors} errors")
        steps = []
        for c in cfg.concurrency:
            step = run_step(cfg, server, c, texts_path, work)
            mb = step.server.get("mean_batch_size")
            log(f"{label}: concurrency {c}: {step.throughput_rps:.1f} req/s, p50 {step.p50_ms:.2f} ms, p99 "
                f"{step.p99_ms:.2f} ms, {step.errors} errors" + (f", mean batch {mb:.2f}" if mb is not None else ""))
            steps.append(step)
        rss = server.rss_mb()
        code = server.stop()
    if code != 0:
        log(f"{label}: the server exited with {code if code is not None else 'no code (killed)'} after SIGTERM")
    return ServerRun(label, max_batch_size, server.command, server.ready_s, code, tuple(steps), server.engine,
                     rss, served=server.launch.served, note=server.launch.note,
                     listening=tuple(f"{a}:{p}" for a, p in server.sockets)), paired


def run_peer(cfg: ServeBenchConfig, peer: str, texts_path: Path, work: Path, log: Callable[[str], None],
             task: str) -> ServerRun | PeerFailure:
    """A peer's run, or why it could not be measured (a failure is a row of the report, never a missing one)."""
    try:
        return run_config(cfg, peer, cfg.batch_size, texts_path, work, log, peer=peer, task=task)[0]
    except DeployError as e:
        log(f"{peer}: FAILED: {e}")
        return PeerFailure(peer, f"{type(e).__name__}: {e}")


# ------------------------------------------------------------------------------------------ one run

def heldout_texts(n: int) -> list[str]:
    from exporters.tweets import split

    heldout = split()[1]
    if n > len(heldout):
        raise ConfigError(f"texts={n} is more than the {len(heldout)} held-out tweets. Fix: --texts {len(heldout)} "
                          f"or fewer")
    return [t.text for t in heldout[:n]]


def check_artifact(cfg: ServeBenchConfig):
    m = read_manifest(cfg.artifact)  # ArtifactError with the fix when it is not an artifact
    if m.task not in peers.TASK_PEERS:
        raise ConfigError(f"the service benchmark sends one tweet per request and checks a text-classification "
                          f"answer or one embedding; '{cfg.artifact}' is a {m.task} artifact. Fix: pass a "
                          f"text-classification or feature-extraction artifact, e.g. "
                          f"artifacts/default/text-classification/onnxruntime-fp32")
    if bad := [p for p in cfg.peers if p not in peers.TASK_PEERS[m.task]]:
        raise ConfigError(f"peer(s) {', '.join(bad)} are measured on text-classification only; '{cfg.artifact}' is "
                          f"a {m.task} artifact. Fix: --peer {','.join(peers.TASK_PEERS[m.task])} or none")
    rows = int(m.shape_profile["max"]["batch"])
    if cfg.batch_size > rows:
        raise ConfigError(f"batch_size {cfg.batch_size} is over what '{cfg.artifact}' accepts ({rows} rows). Fix: "
                          f"--batch-size {rows} or less")
    return m


def _modes(c: Ceiling) -> str:
    return (", ".join(f"{k} {v:.1f}" for k, v in c.modes_texts_per_s.items()) + f" texts/s; one text p50 "
            f"{c.single_p50_ms:.2f} ms")


def run_serve_bench(cfg: ServeBenchConfig, log: Callable[[str], None] = print) -> ServeBenchReport:
    from benchmarks.bench import env as envmod

    from .ceiling import measure_ceiling

    m = check_artifact(cfg)
    import importlib.metadata
    import importlib.util

    # never imported here: locust monkey-patches threading and sockets (gevent) in the importing process
    if importlib.util.find_spec("locust") is None:
        raise ServeBenchError("the load benchmark needs locust (the `dev` extra). Fix: make venv, or pip install "
                              "'locust>=2.20'")

    texts = heldout_texts(cfg.texts)
    environment = envmod.capture(REPO)
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        work = Path(tmp)
        texts_path = work / "texts.json"
        texts_path.write_text(json.dumps(texts, ensure_ascii=False))
        cls = m.task == "text-classification"  # feature-extraction: our /v1/embeddings and the peers only
        ceilings = [measure_ceiling(cfg, texts, "before")] if cls else []
        if ceilings:
            log(f"in-process ceiling: {_modes(ceilings[0])}")
        on, paired = run_config(cfg, BATCHING, cfg.batch_size, texts_path, work / BATCHING, log,
                                paired_texts=texts if cls else None, task=m.task)
        runs = [on]
        if cls:
            runs.append(run_config(cfg, NO_BATCHING, 1, texts_path, work / NO_BATCHING, log)[0])
        paired_grpc = None
        if cls and cfg.grpc:
            grpc_run, paired_grpc = run_config(cfg, BATCHING_GRPC, cfg.batch_size, texts_path, work / BATCHING_GRPC,
                                               log, paired_texts=texts, peer=peers.OURS_GRPC)
            runs.append(grpc_run)
        measured = [run_peer(cfg, peer, texts_path, work / peer, log, m.task) for peer in cfg.peers]
        runs += [r for r in measured if isinstance(r, ServerRun)]
        failures = [r for r in measured if isinstance(r, PeerFailure)]
        if cls:
            ceilings.append(measure_ceiling(cfg, texts, "after"))
            log(f"in-process ceiling again: {_modes(ceilings[1])}")
    environment["load_average_end"] = envmod.cpu_info()["load_average_1_5_15"]
    run_dicts = [asdict(r) for r in runs]
    fails = [asdict(f) for f in failures]
    targets = judge(run_dicts, [asdict(c) for c in ceilings], cfg.max_queue, asdict(paired) if paired else None,
                    task=m.task, paired_grpc=asdict(paired_grpc) if paired_grpc else None) + peer_targets(run_dicts,
                                                                                                        fails)
    notes = [f"{r.label}: the server exited with {r.exit_code if r.exit_code is not None else 'no code (killed)'} "
             f"after SIGTERM (expected 0)" for r in runs if r.exit_code != 0]
    notes += [f"{r.label} c={s.concurrency}: the step stopped on its request budget ({cfg.max_requests}) before "
              f"its time" for r in runs for s in r.steps if s.budget_exhausted]
    notes += [f"{r.label} c={s.concurrency}: errors by kind (server): {s.server['errors']}"
              for r in runs for s in r.steps if s.server.get("errors")]
    notes += [f"{r.label} c={s.concurrency}: {s.errors} failed requests; the first: {s.error_messages[0]}"
              for r in runs for s in r.steps if s.errors and s.error_messages]
    if paired and paired.connections > 1:
        notes.append(f"paired c=1 measurement: {paired.connections} connections were opened (a failed exchange "
                     f"closes the connection; 1 means one keep-alive connection throughout)")
    threads = f"--threads {cfg.threads}" if cfg.threads else "the backend's default intra-op threads"
    cthreads = cfg.effective_ceiling_threads
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return ServeBenchReport(
        created=created, command=cfg.command, model=str(m.source.get("id") or m.source.get("name") or "?"),
        task=m.task, artifact=str(cfg.artifact), backend=m.backend, precision=m.precision, config=config,
        method={
            "serve_command": " ".join(["distilbert-deploy", *serve_args(cfg, cfg.batch_size, 0)]).replace(
                "--port 0", "--port PORT"),
            "steps": f"concurrency {', '.join(map(str, cfg.concurrency))}, in that order, against one server per "
                     f"configuration; each step is one locust process: {cfg.warmup_s:g} s warm-up, then "
                     f"{cfg.duration_s:g} s measured, bounded at {cfg.max_requests} measured requests; {threads}, "
                     f"{cfg.instances} instance(s), --max-queue-delay-ms {cfg.queue_delay_ms:g}, --max-queue "
                     f"{cfg.max_queue} rows",
            "figures": "client side, from every request's own timing (locust's perf_counter around the whole HTTP "
                       "exchange): throughput = successful answers completed in the measured window (end of "
                       "warm-up to the last answer) / its length; p50/p90/p99 over the requests started in the "
                       f"window (numpy `{PERCENTILE_METHOD}`); errors = failed requests (HTTP status other than 200 "
                       "or not a text-classification answer / one embedding) over the whole step, warm-up included. "
                       "Each engine is driven in its own protocol (the peers table says which). The locust c=1 "
                       "step is reported like the others, but the c=1 latency target is judged on the paired "
                       "measurement below, not on it",
            "ceiling": f"in-process `runtimes.pipeline.load_pipeline(artifact, RuntimeOptions(threads="
                       f"{cthreads}), batch_size={cfg.batch_size})` on the same texts in this process, no server "
                       f"running; the best throughput of three ways of calling it (calls of {cfg.batch_size} texts in "
                       f"corpus order; one text per call; all texts in one call, which the pipeline sorts by length "
                       f"before batching), and the one-text p50; at least {cfg.ceiling_min_time_s:g} s and "
                       f"{cfg.ceiling_min_iters} calls each (one call for all texts at once), once before and once "
                       f"after the service runs; the c=64 target uses the higher throughput of the two. Its one-text "
                       f"p50 is reported for reference only: measured minutes away from the service, it is not what "
                       f"the c=1 target is judged on",
            "paired": f"the c=1 latency target's figures: while the {BATCHING} server is up ({PAIRED_WHEN}), this "
                      f"process loads the same artifact in-process (`load_pipeline(artifact, RuntimeOptions("
                      f"threads={cthreads}))`, as the ceiling) and, on the held-out texts in order, one at a time, "
                      f"alternates one in-process call `pipe(text)` and one `POST /v1/models/{MODEL_NAME}/predict` "
                      f"{{\"inputs\": text}} over one keep-alive http.client connection, on the same text, swapping "
                      f"which goes first every pair; each timed with perf_counter (the request from sending it to "
                      f"having read the answer); {cfg.paired_warmup_pairs} untimed warm-up pairs, then at most "
                      f"{cfg.paired_max_pairs} pairs or {cfg.paired_max_s:g} s; a pair whose answer is not a 200 "
                      f"text-classification answer is dropped and counted as an error; p50/p90 numpy `linear`; "
                      f"met when service p50 <= in-process p50 + {P50_SLACK_MS:g} ms"
                      + (f"; with --grpc, the same against the {BATCHING_GRPC} server, one gRPC ModelInfer (one BYTES "
                         f"`text`, tritonclient's messages) over one channel in place of the HTTP request"
                         if cfg.grpc else ""),
        },
        load={"tool": "locust", "version": importlib.metadata.version("locust"), "user_class": "FastHttpUser",
              "endpoint": f"/v1/models/{MODEL_NAME}/predict" if cls else "/v1/embeddings", "texts": len(texts),
              "text_source": "exporters.tweets.split()[1], the held-out split, in its order",
              "mean_chars": float(np.mean([len(t) for t in texts]))},
        environment=environment, ceilings=tuple(ceilings), runs=tuple(runs), targets=tuple(targets), paired=paired,
        paired_grpc=paired_grpc,
        notes=tuple(notes), failures=tuple(failures))
