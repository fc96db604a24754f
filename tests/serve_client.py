"""A real `distilbert-deploy serve` process on 127.0.0.1 for the service tests, and a plain http.client to talk to
it (so a test sees statuses and headers exactly as a client does). Every wait here is bounded in time."""
from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from runtimes.procs import ServerProcess, cli_argv, free_port


class Server(ServerProcess):
    """gate: a file path; every batch waits until that file exists (tests/gated_serve.py), so a test holds requests
    in flight for as long as it needs and releases them by creating the file. Spawned at construction; failures
    are AssertionErrors with the server's log."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None, gate: Path | None = None):
        self.port = free_port()
        argv = (cli_argv("serve") if gate is None else
                [sys.executable, str(Path(__file__).with_name("gated_serve.py")), str(gate), "serve"])
        super().__init__([*argv, *map(str, args), "--port", str(self.port)], log,
                         f"http://127.0.0.1:{self.port}/v2/health/ready", env=env, error=AssertionError)
        self.spawn()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> "Server":
        self.ready_timeout_s = timeout
        return super().wait_ready()

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
        self.kill()  # a failed test never leaves a server behind

    def stop(self, timeout: float = 60) -> int:
        code = super().stop(timeout)
        if code is None:
            raise AssertionError(f"server did not exit {timeout} s after SIGTERM:\n{self.log}")
        return code


def delta(after: dict, before: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)
