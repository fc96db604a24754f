"""Test only: `python tests/gated_serve.py GATE serve ARGS...` is `distilbert-deploy serve ARGS...` with a gate in
front of the runtime: every batch the batcher hands an instance waits until the file GATE exists. The warm-up and
readiness are not held (they call the runtime directly, before the batcher exists). A test uses it to keep requests
in flight for exactly as long as it needs, on any machine, and releases them by creating the file: it never assumes
how long a request takes. `serve_client.Server(..., gate=PATH)` starts it. Production code knows nothing of it."""
from __future__ import annotations

import sys
import time
from pathlib import Path

HANG_S = 300  # bounds a test that never opens the gate: the held batch then fails instead of waiting for ever


def gated(run, gate: Path):
    def call(feed):
        end = time.monotonic() + HANG_S
        while not gate.exists():
            if time.monotonic() > end:
                raise RuntimeError(f"test gate {gate} was not opened within {HANG_S} s")
            time.sleep(0.005)
        return run(feed)

    return call


def main() -> int:
    gate, argv = Path(sys.argv[1]), sys.argv[2:]
    import runtimes.serving.model as model

    batcher = model.DynamicBatcher
    model.DynamicBatcher = lambda runners, **kw: batcher([gated(r, gate) for r in runners], **kw)
    from distilbert_deploy.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
