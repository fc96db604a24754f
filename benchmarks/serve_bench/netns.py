"""The Ray peers' private network namespace: whether this process is in one, and re-running the command inside one."""
from __future__ import annotations

import sys


def private_network() -> bool:
    """Only a loopback interface in this process's network namespace (/proc/self/net/dev is per namespace; /sys is
    not): inside `unshare -n`, where Ray's servers cannot reach past 127.0.0.1."""
    from pathlib import Path

    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in lines] == ["lo"]


def into_private_network() -> None:
    """Re-run this very command inside a new network namespace with only loopback up (as root)."""
    import os
    import shutil

    from .config import ServeBenchError

    if os.environ.get("SERVE_BENCH_NETNS"):  # already re-run once: never loop
        raise ServeBenchError("still not in a private network namespace after `unshare -n`")
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        raise ServeBenchError("the Ray peers must run in a private network namespace (Ray's internal servers bind the "
                              "host's address even when asked for loopback), which needs root with unshare and ip. "
                              "Fix: run as root, or drop --peer ray-1/ray-2")
    print("ray peers: re-running inside a private network namespace (unshare -n, loopback only)", file=sys.stderr)
    os.environ["SERVE_BENCH_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *sys.orig_argv])
