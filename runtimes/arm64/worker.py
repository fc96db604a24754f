"""Runs INSIDE the emulated aarch64 Python (runtimes/arm64/runtime.py starts it): nothing of the project is
importable there, so this file needs only the standard library, numpy and onnxruntime.

    python3 -I worker.py --deps /opt/pydeps MODEL [--threads N]

Protocol (JSON lines; stdout is reserved for it, anything a library prints goes to stderr):
  worker -> host, once:   {"ready": true, "machine": ..., "onnxruntime": ..., "numpy": ..., "providers": [...], ...}
  host -> worker:         {"in": "feed.npz", "out": "outputs.npz"}   tokenized int64 arrays in, raw outputs out
  worker -> host:         {"ok": true, "seconds": t}  or  {"error": "..."}
EOF on stdin ends the worker (exit 0)."""
import argparse
import json
import os
import platform
import sys
import time

# aarch64 getauxval bits: what the (emulated) CPU offers the int8 kernels
HWCAP = {"asimd": (16, 1 << 1), "asimddp": (16, 1 << 20), "sve": (16, 1 << 22), "i8mm": (26, 1 << 13),
         "bf16": (26, 1 << 14), "sve2": (26, 1 << 1)}


def cpu_features() -> list:
    """AT_HWCAP (16) / AT_HWCAP2 (26) flags. onnxruntime falls back to them when cpuinfo cannot read /sys, as here."""
    try:
        import ctypes

        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        return [name for name, (at, bit) in HWCAP.items() if getauxval(at) & bit]
    except Exception:  # noqa: BLE001 (reported as unknown)
        return ["unknown"]


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # keep the protocol channel clean of library output
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--deps", required=True)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, args.deps)

    def say(**msg):
        proto.write(json.dumps(msg) + "\n")

    try:
        import numpy as np
        import onnxruntime as ort

        t0 = time.perf_counter()
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if args.threads:
            so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in sess.get_outputs()]
    except Exception as e:  # noqa: BLE001 (reported to the host, which raises)
        say(error=f"loading {args.model}: {type(e).__name__}: {e}")
        return 3
    say(ready=True, machine=platform.machine(), cpu_features=cpu_features(), python=platform.python_version(),
        onnxruntime=ort.__version__,
        numpy=np.__version__, providers=sess.get_providers(), outputs=outputs,
        load_seconds=round(time.perf_counter() - t0, 3))
    for line in sys.stdin:
        try:
            req = json.loads(line)
            with np.load(req["in"]) as z:
                feed = {k: z[k] for k in z.files}
            t = time.perf_counter()
            got = sess.run(outputs, feed)
            seconds = time.perf_counter() - t
            np.savez(req["out"], **dict(zip(outputs, got)))
            say(ok=True, seconds=round(seconds, 4))
        except Exception as e:  # noqa: BLE001
            say(error=f"{type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
