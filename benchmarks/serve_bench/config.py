"""ServeBenchConfig: built once from the CLI / Makefile variables, validated in __post_init__ (no I/O there)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from runtimes.errors import ConfigError, DeployError


class ServeBenchError(DeployError):
    """The benchmark could not measure: the server did not start or become ready, or the load tool failed."""

HOST = "127.0.0.1"  # the only address the benchmark ever talks to
MODEL_NAME = "bench"  # the name the served model gets (--name)
# other engines under the same load (benchmarks/serve_bench/peers.py), each from its own venv: the same app on Ray
# Serve with 1 or 2 replicas (.venv-ray); Triton (the bundled tritonserver, .venv-triton) serving the --python-runtime
# repository through its text ensemble; KServe's ModelServer with a kserve.Model over our runtime, over REST and over
# gRPC (.venv-kserve); infinity-emb --engine optimum on the same ONNX model (.venv-infinity)
PEERS = ("ray-1", "ray-2", "triton", "kserve", "kserve-grpc", "infinity")


@dataclass(frozen=True)
class ServeBenchConfig:
    artifact: Path
    concurrency: tuple[int, ...] = (1, 4, 16, 64)  # closed-loop users per step
    batch_size: int = 16  # "batching on": --max-batch-size (and the ceiling's chunk size)
    queue_delay_ms: float = 2.0  # --max-queue-delay-ms (the service's default)
    max_queue: int = 256  # --max-queue, rows: above the largest concurrency, so no step may see a 503
    instances: int = 1  # --instances
    spin: bool = True  # False: the service runs with --no-spin
    max_padding: float | None = None  # --max-padding of the batching configuration; None = the service's default
    threads: int | None = None  # --threads (ORT intra-op threads per instance); None = the backend's default
    # measurement, per step: warm-up, then the measured window; bounded in time and in requests
    warmup_s: float = 3.0
    duration_s: float = 15.0
    max_requests: int = 20000  # measured requests per step: the count bound
    texts: int = 2000  # held-out tweets used (the whole held-out split by default)
    ceiling_min_time_s: float = 4.0  # in-process: each measurement runs until this much time ...
    ceiling_min_iters: int = 20  # ... and this many calls
    ceiling_threads: int | None = None  # in-process intra-op threads; None: the same as the service's --threads
    # the paired c=1 latency (paired.measure_paired): in-process and HTTP calls interleaved while the batching server
    # is up; untimed warm-up pairs, then pairs until either bound is reached
    paired_warmup_pairs: int = 20
    paired_max_pairs: int = 400  # the count bound
    paired_max_s: float = 20.0  # the time bound (measured pairs; at least one pair is always taken)
    ready_timeout_s: float = 300.0  # server start: load + warm-up
    stop_timeout_s: float = 60.0  # SIGTERM -> exit
    port: int | None = None  # None: a free port on 127.0.0.1
    peers: tuple[str, ...] = ()  # PEERS measured after our service, in this order
    grpc: bool = False  # also our batching server over OIP v2 gRPC (text-classification), beside the gRPC peers
    quick: bool = False
    out: Path = Path("reports/serve-bench")
    name: str = "serve-bench"
    command: str = ""

    def __post_init__(self):
        if not self.concurrency or any(not isinstance(c, int) or c < 1 for c in self.concurrency):
            raise ConfigError(f"concurrency must be positive integers (users per step); got {self.concurrency!r}")
        if len(set(self.concurrency)) != len(self.concurrency):
            raise ConfigError(f"concurrency lists a step twice: {self.concurrency!r}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size is the batching-on --max-batch-size and must be >= 2 (batching off is "
                              f"always --max-batch-size 1); got {self.batch_size}")
        if self.max_queue < max(self.concurrency):
            raise ConfigError(f"max_queue ({self.max_queue} rows) is below the largest concurrency "
                              f"({max(self.concurrency)}): requests would be refused with 503 and the zero-error "
                              f"target would measure the limit, not the service. Fix: --max-queue "
                              f"{max(self.concurrency)} or more")
        if self.max_queue < self.batch_size:
            raise ConfigError(f"max_queue ({self.max_queue}) must hold one full batch ({self.batch_size})")
        for what, v in (("instances", self.instances), ("max_requests", self.max_requests), ("texts", self.texts),
                        ("ceiling_min_iters", self.ceiling_min_iters), ("paired_max_pairs", self.paired_max_pairs)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{what} must be an integer >= 1; got {v!r}")
        if not isinstance(self.paired_warmup_pairs, int) or self.paired_warmup_pairs < 0:
            raise ConfigError(f"paired_warmup_pairs must be an integer >= 0; got {self.paired_warmup_pairs!r}")
        for what, v in (("threads", self.threads), ("ceiling_threads", self.ceiling_threads)):
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{what} must be an integer >= 1 (or unset for the backend's default); got {v!r}")
        if self.queue_delay_ms < 0 or self.warmup_s < 0 or self.ceiling_min_time_s < 0:
            raise ConfigError(f"queue_delay_ms, warmup_s and ceiling_min_time_s must be >= 0; got "
                              f"{self.queue_delay_ms}, {self.warmup_s}, {self.ceiling_min_time_s}")
        for what, v in (("duration_s", self.duration_s), ("ready_timeout_s", self.ready_timeout_s),
                        ("stop_timeout_s", self.stop_timeout_s), ("paired_max_s", self.paired_max_s)):
            if v <= 0:
                raise ConfigError(f"{what} must be > 0 seconds; got {v}")
        if bad := [p for p in self.peers if p not in PEERS]:
            raise ConfigError(f"unknown peer(s) {', '.join(bad)}. Expected some of: {', '.join(PEERS)} (or none)")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535; got {self.port}")

    @property
    def step_timeout_s(self) -> float:
        """The hard wall-clock bound on one locust process (its own -t and timer come first)."""
        return self.warmup_s + self.duration_s + 60.0

    @property
    def effective_ceiling_threads(self) -> int | None:
        return self.ceiling_threads if self.ceiling_threads is not None else self.threads


QUICK = dict(warmup_s=0.5, duration_s=2.0, max_requests=2000, texts=64, ceiling_min_time_s=0.3, ceiling_min_iters=5,
             paired_warmup_pairs=5, paired_max_pairs=60, paired_max_s=3.0)


def quick(cfg: ServeBenchConfig, **keep) -> ServeBenchConfig:
    """The --quick preset (short steps, few texts, for CI); `keep` overrides it."""
    return replace(cfg, quick=True, **{**QUICK, **keep})
