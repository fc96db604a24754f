"""Subprocess worker: `python -m benchmarks.bench.worker` speaks JSON lines on stdin/stdout (one request, one
reply); `--cold-start` loads, runs one inference and reports the times. Needs numpy and the target's own
libraries, plus this repository on PYTHONPATH (it imports nothing heavy itself)."""
from __future__ import annotations

import json
import os
import sys
import time

T_MAIN = time.time()


def _process_age_s() -> float | None:
    """Seconds from process creation to now (the interpreter's own start-up and imports up to main)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK") - (time.time() - T_MAIN))
    except (OSError, ValueError, IndexError):
        return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The protocol owns a private copy of stdout; fd 1 itself is pointed at stderr, so nothing a library prints
    # (Python or C++: OpenVINO, onnxruntime) can corrupt it.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from .launchers import Session
    from .runners import TargetSpec
    from .workloads import Workload

    def reply(ok: bool, result=None, exc: BaseException | None = None):
        msg = {"ok": ok, "result": result} if ok else {"ok": False, "type": type(exc).__name__,
                                                        "message": str(exc)}
        out.write(json.dumps(msg) + "\n")

    if "--cold-start" in argv:
        startup = _process_age_s()
        req = json.loads(sys.stdin.readline())
        try:
            s = Session(TargetSpec(**req["spec"]))
            t0 = time.perf_counter_ns()
            info = s.load()
            t1 = time.perf_counter_ns()
            w = Workload.from_dict(req["workload"])
            s.set_workload(w)
            t2 = time.perf_counter_ns()
            s.run(w.key, 1)
            t3 = time.perf_counter_ns()
            reply(True, {"startup_s": startup, "load_s": (t1 - t0) / 1e9, "first_infer_s": (t3 - t2) / 1e9,
                         "peak_rss_bytes": s.memory()["peak_rss_bytes"], "describe": info["describe"]})
        except Exception as e:  # reported to the parent, which decides
            reply(False, exc=e)
            return 1
        return 0

    session = None
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        op = msg["op"]
        try:
            if op == "load":
                session = Session(TargetSpec(**msg["spec"]))
                reply(True, session.load())
            elif op == "workload":
                session.set_workload(Workload.from_dict(msg["workload"]))
                reply(True)
            elif op == "run":
                reply(True, session.run(msg["key"], msg["n"], msg.get("rewarm", 0)))
            elif op == "reset":
                session.cursor[msg["key"]] = 0
                reply(True)
            elif op == "drop":
                session.drop(msg["key"])
                reply(True)
            elif op == "memory":
                reply(True, session.memory())
            elif op == "close":
                if session is not None:
                    session.close()
                reply(True)
                return 0
            else:
                raise ValueError(f"unknown op '{op}'")
        except Exception as e:
            reply(False, exc=e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
