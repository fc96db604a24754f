"""A Runtime whose inference runs in the aarch64 build of ONNX Runtime under QEMU (worker.py).

The host tokenizes and judges; workers see only arrays: each call writes the feed to an .npz in a private work
directory, a worker runs it and writes the raw outputs back. infer() uses one worker; run_feeds() spreads a list
of feeds over one single-threaded worker per host core (under emulation that is ~2x faster than one worker with
two threads: an idle ORT thread spins in emulated code). The work directory lives under the project cache, never
under a path the root filesystem also has (qemu -L would resolve it to the root filesystem's copy)."""
from __future__ import annotations

import itertools
import json
import os
import selectors
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..artifact import cache_root
from ..base import Runtime
from ..errors import ArtifactMismatch, BackendUnavailable, ConfigError, InputError
from .env import PLATFORM, Arm64Env, locate

WORKER = Path(__file__).with_name("worker.py")
CALL_TIMEOUT_S = 900.0  # one batch under emulation: seconds normally; a hung worker must not hang a run


class _Worker:
    """One emulated python running worker.py on the model."""

    def __init__(self, env: Arm64Env, model: Path, work: Path, threads: int | None, index: int):
        self.log = open(work / f"worker-{index}.log", "w+")
        args = [str(WORKER), str(model), "--deps", "/opt/pydeps"] + (["--threads", str(threads)] if threads else [])
        argv, environ = env.python(*args)
        self.proc = subprocess.Popen(argv, env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.facts: dict = {}

    def send(self, src: Path, dst: Path) -> None:
        self.proc.stdin.write(json.dumps({"in": str(src), "out": str(dst)}) + "\n")
        self.proc.stdin.flush()

    def reply(self, timeout: float = CALL_TIMEOUT_S) -> dict:
        """The worker's next message; BackendUnavailable if it died or hung, ArtifactMismatch if ORT failed."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            if not ready:
                self.proc.kill()
            self.proc.wait()
            why = (f"the worker did not answer in {timeout:.0f} s" if not ready
                   else f"the worker exited with code {self.proc.returncode}")
            raise BackendUnavailable(f"onnxruntime on {PLATFORM}", detail=f"{why}; its log: {self.log_tail()}",
                                     hint="rebuild the environment with make arm64-env if it is damaged")
        msg = json.loads(line)
        if "error" in msg:
            raise ArtifactMismatch(f"onnxruntime on {PLATFORM} failed: {msg['error']}")
        return msg

    def started(self) -> dict:
        self.facts = self.reply()
        if self.facts.get("machine") != "aarch64":
            raise BackendUnavailable(f"onnxruntime on {PLATFORM}", hint="rebuild it: make arm64-env",
                                     detail=f"the emulated python reports machine {self.facts.get('machine')!r}")
        return self.facts

    def log_tail(self) -> str:
        self.log.seek(0)
        lines = [x for x in self.log.read().splitlines() if x.strip() and "cpuinfo" not in x]
        return " | ".join(lines[-6:]) or "(empty)"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class EmulatedArm64Runtime(Runtime):
    backend = "onnxruntime"

    def _load(self) -> None:
        m = self.manifest
        if m.backend != "onnxruntime":
            raise ConfigError(f"'{self.artifact.path}' is a {m.backend} artifact; parity on {PLATFORM} runs "
                              f"onnxruntime artifacts (.onnx or .ort). Fix: judge it on the host, or build the "
                              f"edge artifact: distilbert-deploy quantize SRC --target arm64")
        if self.options.device != "cpu":
            raise ConfigError(f"the emulated {PLATFORM} runs on its CPU only; device '{self.options.device}' was "
                              f"asked for. Fix: omit --device")
        if self.options.precision not in (None, m.precision):
            raise ConfigError(f"this artifact is {m.precision}; precision '{self.options.precision}' was asked for")
        self.env: Arm64Env = locate()
        cache_root().mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="arm64-", dir=cache_root()))
        self.calls = itertools.count()
        self.workers: list[_Worker] = []
        try:
            self.facts = self._start(1, self.options.threads)[0].facts
        except Exception:
            self._close()
            raise

    def _start(self, n: int, threads: int | None) -> list[_Worker]:
        new = [_Worker(self.env, self.artifact.model_path.resolve(), self.work, threads, len(self.workers) + i)
               for i in range(n)]
        self.workers += new
        for w in new:
            w.started()
        return new

    def _send(self, w: _Worker, feed: dict) -> tuple[Path, Path]:
        n = next(self.calls)
        src, dst = self.work / f"in-{n}.npz", self.work / f"out-{n}.npz"
        np.savez(src, **feed)
        w.send(src, dst)
        return src, dst

    @staticmethod
    def _collect(w: _Worker, src: Path, dst: Path) -> dict[str, np.ndarray]:
        """The worker's answer to one _send: its outputs, read back and removed with the feed file."""
        try:
            w.reply()
            with np.load(dst) as z:
                return {k: z[k] for k in z.files}
        finally:
            src.unlink(missing_ok=True)
            dst.unlink(missing_ok=True)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        w = self.workers[0]
        return self._collect(w, *self._send(w, feed))

    def run_feeds(self, feeds: list[dict], workers: int | None = None, done=None) -> list:
        """Outputs for every feed, in order, from single-threaded workers running side by side; a feed ORT rejects
        gets its ArtifactMismatch in its place (the caller decides what a failing feed means). done(): called per feed."""
        if not self.loaded:
            raise InputError("the emulated aarch64 runtime is not loaded. Fix: call .load() or use it in a `with` block")
        n = max(1, min(workers or os.cpu_count() or 1, len(feeds)))
        pool = self._start(n, 1)
        results: list = [None] * len(feeds)
        todo = list(enumerate(feeds))[::-1]
        busy: dict = {}  # stdout file -> (worker, index, src, dst)

        def submit(w: _Worker) -> None:
            i, feed = todo.pop()
            busy[w.proc.stdout] = (w, i, *self._send(w, feed))

        try:
            for w in pool:
                if todo:
                    submit(w)
            while busy:
                with selectors.DefaultSelector() as sel:
                    for f in busy:
                        sel.register(f, selectors.EVENT_READ)
                    ready = sel.select(CALL_TIMEOUT_S)
                if not ready:
                    raise BackendUnavailable(f"onnxruntime on {PLATFORM}", hint="see the worker logs",
                                             detail=f"no worker answered in {CALL_TIMEOUT_S:.0f} s")
                for key, _ in ready:
                    w, i, src, dst = busy.pop(key.fileobj)
                    try:
                        results[i] = self._collect(w, src, dst)
                    except ArtifactMismatch as e:
                        results[i] = e
                    if done:
                        done()
                    if todo:
                        submit(w)
        finally:
            for w in pool:
                w.close()
                self.workers.remove(w)
        return results

    def _describe(self) -> dict:
        arm = getattr(self, "facts", {})
        return {**self.env.describe(), "providers": arm.get("providers"), "onnxruntime": arm.get("onnxruntime"),
                "numpy": arm.get("numpy"), "cpu_features": arm.get("cpu_features")}

    def _close(self) -> None:
        for w in getattr(self, "workers", []):
            w.close()
        self.workers = []
        shutil.rmtree(self.work, ignore_errors=True)
