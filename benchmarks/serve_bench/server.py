"""The server under test as a subprocess (runtimes.procs.ServerProcess), checked to listen on loopback only, and
the /proc meters of its process tree (CPU seconds, RSS)."""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from runtimes.procs import ServerProcess, free_port

from . import peers
from .config import ServeBenchConfig, ServeBenchError
from .parsing import parse_prometheus


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (Ray's raylet, GCS and replicas; Triton's python stubs), from /proc."""
    parent: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree, frontier = [pid], {pid}
    while frontier:
        frontier = {c for c, pp in parent.items() if pp in frontier}
        tree += frontier
    return tree


def tree_cpu_s(pid: int) -> float | None:
    times = [process_cpu_s(p) for p in process_tree(pid)]
    return sum(t for t in times if t is not None) if times and times[0] is not None else None


def tree_rss_mb(pid: int) -> float | None:
    total = 0
    for p in process_tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return round(total / 2**20, 1) if total else None


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children (each locust process, once it ended)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class Server(ServerProcess):
    """`distilbert-deploy serve` (or a peer) as a subprocess on 127.0.0.1: started, ready, checked to listen on
    loopback only, stopped with SIGTERM (killed only when it does not exit in time). Use as a context manager so it
    never outlives the run."""

    def __init__(self, cfg: ServeBenchConfig, max_batch_size: int, log_path: Path, peer: str | None = None,
                 task: str = "text-classification"):
        self.cfg, self.peer = cfg, peer
        self.port = cfg.port if cfg.port and peer is None else free_port()
        self.launch = peers.launch(cfg, peer, max_batch_size, log_path.parent, self.port, free_port(), task)
        self.url, self.engine, self.model = self.launch.url, self.launch.engine, self.launch.model
        super().__init__(self.launch.argv, log_path, self.url + self.launch.ready_path, command=self.launch.command,
                         env=self.launch.env, cwd=self.launch.cwd, ready_timeout_s=cfg.ready_timeout_s,
                         stop_timeout_s=cfg.stop_timeout_s, error=ServeBenchError)
        self.sockets: list = []

    def __enter__(self) -> "Server":
        super().__enter__()
        try:
            from .netns import private_network

            self.sockets = peers.check_loopback(self.engine, process_tree(self.proc.pid), private_network())
        except BaseException:
            self.stop()
            raise
        return self

    def metrics(self) -> list | None:
        """Our service's /metrics samples; None for a peer (Ray's /metrics is one replica's, Triton has its own)."""
        if self.peer not in (None, peers.OURS_GRPC):
            return None
        code, text = _http_get(self.url + "/metrics")
        if code != 200:
            raise ServeBenchError(f"GET {self.url}/metrics answered {code}: {text[:200]}")
        return parse_prometheus(text)

    def cpu_s(self) -> float | None:
        return tree_cpu_s(self.proc.pid) if self.proc is not None else None

    def rss_mb(self) -> float | None:
        return tree_rss_mb(self.proc.pid) if self.proc is not None else None
