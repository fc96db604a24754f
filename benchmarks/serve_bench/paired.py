"""The paired c=1 latency: in-process and service calls of the same texts, interleaved, over REST or OIP v2 gRPC
(measure_paired); each answer checked as the locustfile checks it."""
from __future__ import annotations

import http.client
import json
import time

from ..bench.timing import timed_call
from .config import HOST, MODEL_NAME, ServeBenchConfig
from .report import BATCHING, Paired, paired_stats
from .server import Server


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
    the held-out texts in order, one at a time, runs pairs of one in-process call `pipe(text)` and one request with
    the same text (HTTP predict, or gRPC ModelInfer against the gRPC run: paired_client); the in-process call goes
    first on even pairs and the request on odd ones (the order swapped every pair, warm-up included, cancels an order
    bias). The in-process call is timed by bench.timing.timed_call, the request with perf_counter around the exchange
    (failed ones included). After cfg.paired_warmup_pairs untimed pairs, pairs run until cfg.paired_max_pairs pairs
    or cfg.paired_max_s seconds, whichever comes first (at least one pair). A pair whose request failed is dropped
    and counted as an error."""
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
        i_ms = timed_call(pipe, text)[1] / 1e6
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
