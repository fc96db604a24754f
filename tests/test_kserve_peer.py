"""The KServe peer of `make bench-serve` (benchmarks/serve_bench/kserve_model.py, .venv-kserve): KServe's own
ModelServer serving the tiny classifier through a kserve.Model over our task layer, started as the benchmark starts
it, bound to 127.0.0.1 only (KServe hard-codes 0.0.0.0 and [::]; the launcher rebinds both), answering OIP v2 over
REST and gRPC, driven for one short locust step over gRPC, and stopped with SIGTERM."""
from __future__ import annotations

import json
import urllib.request

import pytest

from benchmarks.serve_bench.config import HOST, ServeBenchConfig, quick

pytestmark = [pytest.mark.kserve, pytest.mark.server]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    from exporters.onnx_export import ExportConfig, export

    path = tmp_path_factory.mktemp("kserve") / "tiny-text-classification"
    export(ExportConfig(model="tiny", task="text-classification", out=path))
    return path


def test_kserve_peer_serves_rest_and_grpc_on_loopback_only(tiny_classifier, tmp_path):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from benchmarks.serve_bench.runner import run_step
    from benchmarks.serve_bench.server import Server

    cfg = quick(ServeBenchConfig(artifact=tiny_classifier, concurrency=(2,), ready_timeout_s=120), duration_s=1.0)
    with Server(cfg, 16, tmp_path / "server.log", "kserve-grpc") as server:
        grpc_port = server.launch.grpc_port
        # every listening socket of its process tree is on loopback, the HTTP and the gRPC port among them
        ports = {int(s.rsplit(":", 1)[1]) for s in (f"{a}:{p}" for a, p in server.sockets)}
        assert {server.port, grpc_port} <= ports
        assert all(a in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for a, _ in server.sockets), server.sockets
        body = json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                       "data": ["I love it", "awful"]}]}).encode()
        req = urllib.request.Request(f"{server.url}/v2/models/bench/infer", body,
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            out = {o["name"]: o for o in json.load(r)["outputs"]}["answer"]
        answers = [json.loads(x) for x in out["data"]]
        assert out["shape"] == [2] and all("label" in a and 0 <= a["score"] <= 1 for a in answers)
        with grpc.insecure_channel(f"{HOST}:{grpc_port}") as ch:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
            assert stub.ModelReady(service_pb2.ModelReadyRequest(name="bench"), timeout=10).ready
            m = service_pb2.ModelInferRequest(model_name="bench")
            m.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"I love it")
            r = stub.ModelInfer(m, timeout=30)
            got = json.loads(next(o for o in r.outputs if o.name == "answer").contents.bytes_contents[0])
            assert got["label"] == answers[0]["label"]
        texts = tmp_path / "texts.json"
        texts.write_text(json.dumps(["good", "bad", "a longer tweet about the weather today"]))
        step = run_step(cfg, server, 2, texts, tmp_path)  # locust's gRPC user, bounded at 1 s
        assert step.errors == 0 and step.requests > 0 and step.locust["failures"] == 0, step.error_messages
        assert server.stop() == 0
