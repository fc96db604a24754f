"""The process toolkit: a free loopback port, this repository's side venvs, the CLI in a subprocess, and a server
process that is spawned, waited on until ready, logged to a file and drained with SIGTERM. Standard library only;
the service bench, the Triton launcher, the INC worker and the tests all start their processes through it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DeployError

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]


def free_port(host: str = HOST) -> int:
    """A port the OS has just handed out on `host` (free until someone else binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def venv_dir(name: str) -> Path:
    """This repository's side venv `name` (`.venv-<name>`, built by `make venv-<name>`), or the directory that
    $DISTILBERT_DEPLOY_<NAME>_VENV names. Whether it exists is the caller's question."""
    override = os.environ.get(f"DISTILBERT_DEPLOY_{name.upper()}_VENV")
    return Path(override) if override else REPO / f".venv-{name}"


def venv_bin(name: str, exe: str = "python") -> Path:
    return venv_dir(name) / "bin" / exe


def cli_argv(*args) -> list[str]:
    """`distilbert-deploy ARGS` as an argv for a subprocess, with this interpreter."""
    return [sys.executable, "-m", "distilbert_deploy.cli", *map(str, args)]


def http_ready(url: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


class ServerProcess:
    """One server process. `spawn()` starts it with its output in `log_path`; `wait_ready()` polls `ready_url` until
    it answers 200, and raises `error` with the log's tail when the process exits first or `ready_timeout_s` passes;
    `stop()` sends SIGTERM, waits `stop_timeout_s` for the drain and returns the exit code (None when it had to be
    killed). As a context manager it spawns, waits and always stops."""

    def __init__(self, argv: list[str], log_path: Path, ready_url: str, *, name: str = "the server",
                 command: str | None = None, env: dict | None = None, cwd: Path | str | None = None,
                 ready_timeout_s: float = 120, stop_timeout_s: float = 60, error: type[Exception] = DeployError):
        self.argv, self.log_path, self.ready_url, self.name = [str(a) for a in argv], Path(log_path), ready_url, name
        self.command = command or " ".join(self.argv)  # as the error messages show it
        self.env, self.cwd, self.error = env, cwd, error
        self.ready_timeout_s, self.stop_timeout_s = ready_timeout_s, stop_timeout_s
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None
        self.ready_s: float | None = None
        self._started = 0.0

    def spawn(self) -> "ServerProcess":
        self._started = time.monotonic()
        with open(self.log_path, "wb") as log:  # the child holds its own descriptor
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})})
        return self

    def wait_ready(self) -> "ServerProcess":
        deadline = self._started + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.error(f"{self.name} exited with code {self.proc.returncode} before it was ready: "
                                 f"`{self.command}`. Its log:\n{self.log_tail()}")
            if http_ready(self.ready_url):
                self.ready_s = time.monotonic() - self._started
                return self
            time.sleep(0.1)
        self.kill()
        raise self.error(f"{self.name} was not ready after {self.ready_timeout_s:.0f} s: `{self.command}`. "
                         f"Its log:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then the drain; the exit code, or None when it was killed after the timeout."""
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.exit_code = self.proc.returncode
        return self.exit_code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> "ServerProcess":
        self.spawn()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
