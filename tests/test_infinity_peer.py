"""The infinity-emb peer of `make bench-serve` (.venv-infinity, built by `make bench-serve` only: several GB):
`infinity_emb v2 --engine optimum` on a copy of the tiny classifier's ONNX artifact, offline, started as the
benchmark starts it, on 127.0.0.1 only, answering /classify, driven for one short locust step, then stopped."""
from __future__ import annotations

import json
import urllib.request

import pytest

from benchmarks.serve_bench.config import ServeBenchConfig, quick

pytestmark = [pytest.mark.infinity, pytest.mark.server]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    from exporters.onnx_export import ExportConfig, export

    path = tmp_path_factory.mktemp("infinity") / "tiny-text-classification"
    export(ExportConfig(model="tiny", task="text-classification", out=path))
    return path


def test_infinity_peer_classifies_on_loopback_only(tiny_classifier, tmp_path):
    from benchmarks.serve_bench.runner import run_step
    from benchmarks.serve_bench.server import Server

    cfg = quick(ServeBenchConfig(artifact=tiny_classifier, concurrency=(2,), ready_timeout_s=180), duration_s=1.0)
    with Server(cfg, 16, tmp_path / "server.log", "infinity") as server:
        assert server.sockets and all(a == "127.0.0.1" for a, _ in server.sockets), server.sockets
        assert not (tiny_classifier / "model_optimized.onnx").exists()  # it ran in a copy
        req = urllib.request.Request(f"{server.url}/classify", json.dumps({"input": ["I love it"], "model": "bench"})
                                     .encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            scores = json.load(r)["data"][0]
        labels = json.loads((tiny_classifier / "config.json").read_text())["id2label"].values()
        assert {s["label"] for s in scores} == set(labels)
        texts = tmp_path / "texts.json"
        texts.write_text(json.dumps(["good", "bad", "a longer tweet about the weather today"]))
        step = run_step(cfg, server, 2, texts, tmp_path)
        assert step.errors == 0 and step.requests > 0, step.error_messages
        assert server.stop() is not None  # it stops on SIGTERM (by the signal: infinity_emb installs no handler)
