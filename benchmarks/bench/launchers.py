"""Where a target runs: in this process, or in one subprocess per target (its own interpreter, which may be
another venv's, and honest memory figures). Both give the controller the same Handle, so measurement is
interleaved round by round across targets whichever launcher runs them."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from .runners import TargetSpec, make_runner
from .workloads import Workload, build_feeds

REPO = Path(__file__).resolve().parents[2]
def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    """VmHWM: this process image's own peak. (ru_maxrss is not: Linux carries the forking parent's peak across
    exec, so every subprocess would report at least its parent's size.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024


class Session:
    """A loaded runner and its prepared feeds. Used in-process directly, and by the worker in a subprocess."""

    def __init__(self, spec: TargetSpec):
        self.spec = spec
        self.runner = make_runner(spec)
        self.feeds: dict[str, list] = {}
        self.cursor: dict[str, int] = {}

    def load(self) -> dict:
        rss0 = rss_bytes()
        t0 = time.perf_counter_ns()
        self.runner.load()
        load_ns = time.perf_counter_ns() - t0
        t = self.runner.timing
        return {"load_s": load_ns / 1e9, "describe": _jsonable(self.runner.describe()),
                "model_size_bytes": self.runner.model_size_bytes(), "load_rss_delta_bytes": rss_bytes() - rss0,
                "timer": t.timer, "includes_copies": t.includes_copies, "pid": os.getpid(),
                "input_dims": {k: list(v) for k, v in self.runner.input_dims.items()}}

    def set_workload(self, w: Workload) -> None:
        self.feeds[w.key] = [self.runner.prepare(f) for f in build_feeds(w, self.runner.input_dims)]
        self.cursor[w.key] = 0

    def run(self, key: str, n: int, rewarm: int = 0) -> list[int]:
        """n timed calls, cycling through the workload's feeds in order (every target sees the same sequence),
        after `rewarm` untimed calls on the next feed (wakes thread pools that slept while other targets ran)."""
        feeds, i, out = self.feeds[key], self.cursor[key], []
        for _ in range(rewarm if n else 0):
            self.runner.call(feeds[i % len(feeds)])
        for _ in range(n):
            out.append(self.runner.call(feeds[i % len(feeds)]))
            i += 1
        self.cursor[key] = i
        return out

    def drop(self, key: str) -> None:
        self.feeds.pop(key, None)
        self.cursor.pop(key, None)

    def memory(self) -> dict:
        gpu = getattr(self.runner, "gpu_peak_bytes", lambda: None)()
        return {"peak_rss_bytes": peak_rss_bytes(), "rss_bytes": rss_bytes(), "gpu_peak_bytes": gpu}

    def close(self) -> None:
        self.runner.close()


def _jsonable(d):
    return json.loads(json.dumps(d, default=str))


class InProcessHandle:
    launcher = "inprocess"

    def __init__(self, spec: TargetSpec):
        self.spec = spec
        self.session = Session(spec)

    def load(self) -> dict:
        return self.session.load()

    def set_workload(self, w: Workload) -> None:
        self.session.set_workload(w)

    def run(self, key: str, n: int, rewarm: int = 0) -> list[int]:
        return self.session.run(key, n, rewarm)

    def reset(self, key: str) -> None:
        self.session.cursor[key] = 0

    def drop(self, key: str) -> None:
        self.session.drop(key)

    def memory(self) -> dict:
        m = self.session.memory()
        m["note"] = "in-process: peak RSS is the whole benchmark process, shared by every in-process target"
        return m

    def close(self) -> None:
        self.session.close()


class WorkerError(Exception):
    def __init__(self, target: str, etype: str, message: str):
        self.etype, self.message = etype, message
        super().__init__(f"target '{target}' (subprocess): {etype}: {message}")


def worker_env(spec: TargetSpec) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("DISTILBERT_DEPLOY_QUIET", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_cmd(spec: TargetSpec, *extra: str) -> list[str]:
    return [spec.python or sys.executable, "-m", "benchmarks.bench.worker", *extra]


class SubprocessHandle:
    """One worker process per target, spoken to in JSON lines (stdin/stdout); its stderr passes through."""
    launcher = "subprocess"

    def __init__(self, spec: TargetSpec):
        self.spec = spec
        self.proc = subprocess.Popen(worker_cmd(spec), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=None, text=True, env=worker_env(spec), cwd=str(REPO))

    def _ask(self, msg: dict):
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.proc.wait()
            raise WorkerError(self.spec.id, "WorkerDied", f"the worker exited with code {code} during '{msg['op']}'")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise WorkerError(self.spec.id, reply.get("type", "Error"), reply.get("message", ""))
        return reply.get("result")

    def load(self) -> dict:
        return self._ask({"op": "load", "spec": self.spec.to_dict()})

    def set_workload(self, w: Workload) -> None:
        self._ask({"op": "workload", "workload": w.to_dict()})

    def run(self, key: str, n: int, rewarm: int = 0) -> list[int]:
        return self._ask({"op": "run", "key": key, "n": n, "rewarm": rewarm})

    def reset(self, key: str) -> None:
        self._ask({"op": "reset", "key": key})

    def drop(self, key: str) -> None:
        self._ask({"op": "drop", "key": key})

    def memory(self) -> dict:
        m = self._ask({"op": "memory"})
        m["note"] = "own subprocess: peak RSS of this target alone (interpreter and imports included)"
        return m

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._ask({"op": "close"})
            except WorkerError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def open_handle(spec: TargetSpec):
    return (SubprocessHandle if spec.launcher == "subprocess" else InProcessHandle)(spec)


def cold_start(spec: TargetSpec, w: Workload, timeout: float = 600) -> dict:
    """A fresh process: interpreter start, imports, load, first inference. The total is timed here, from just
    before the process is spawned until its answer arrives; the worker reports the parts."""
    t0 = time.perf_counter_ns()
    proc = subprocess.run(worker_cmd(spec, "--cold-start"), input=json.dumps({"spec": spec.to_dict(),
                          "workload": w.to_dict()}) + "\n", capture_output=True, text=True, env=worker_env(spec),
                          cwd=str(REPO), timeout=timeout)
    total = time.perf_counter_ns() - t0
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise WorkerError(spec.id, "ColdStartFailed", f"exit code {proc.returncode}: {' | '.join(tail)}")
    reply = json.loads(lines[-1])
    if not reply.get("ok"):
        raise WorkerError(spec.id, reply.get("type", "Error"), reply.get("message", ""))
    return {"total_ns": total, **reply["result"]}
