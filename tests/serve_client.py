"""A real `distilbert-deploy serve` process on 127.0.0.1 for the service tests, and a plain http.client to talk to
it (so a test sees statuses and headers exactly as a client does). Every wait here is bounded in time."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gate: a file path; every batch waits until that file exists (tests/gated_serve.py), so a test holds requests
    in flight for as long as it needs and releases them by creating the file."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None, gate: Path | None = None):
        self.port = free_port()
        self.log_path = log
        head = ["-m", "distilbert_deploy.cli"] if gate is None else [str(Path(__file__).with_name("gated_serve.py")),
                                                                      str(gate)]
        self.proc = subprocess.Popen(
            [sys.executable, *head, "serve", *map(str, args), "--port", str(self.port)],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> "Server":
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
            try:
                if self.request("GET", "/v2/health/ready", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.proc.kill()
        self.proc.wait(10)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log}")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def post_json(self, path: str, doc, headers: dict | None = None, timeout: float = 60) -> tuple[int, dict, object]:
        status, hdrs, body = self.request("POST", path, json.dumps(doc).encode(),
                                          {"Content-Type": "application/json", **(headers or {})}, timeout)
        return status, hdrs, json.loads(body)

    def predict(self, model: str, inputs, headers: dict | None = None, **parameters):
        return self.post_json(f"/v1/models/{model}/predict", {"inputs": inputs, "parameters": parameters}, headers)

    def metrics(self, headers: dict | None = None) -> dict[tuple, float]:
        """{(sample name, sorted label items): value} from /metrics."""
        status, _, body = self.request("GET", "/metrics", headers=headers)
        assert status == 200, body
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:  # a failed test never leaves a server behind
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"server did not exit {timeout} s after SIGTERM:\n{self.log}")


def delta(after: dict, before: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)
