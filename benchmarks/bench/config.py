"""BenchConfig: built once from the CLI / Makefile variables, validated in __post_init__ (no I/O there)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from runtimes.errors import ConfigError
from runtimes.procs import venv_bin

from .workloads import MAX_POSITIONS, SELECT_WORKLOADS, parse_select

LAUNCHERS = ("inprocess", "subprocess")
TIMINGS = ("auto", "end-to-end", "device")
SCENARIOS = ("latency", "sweep", "realtext", "throughput", "coldstart", "select")
BASELINES = {  # id -> (precision, compile)
    "torch-eager-fp32": ("fp32", False), "torch-eager-bf16": ("bf16", False),
    "torch-compile-fp32": ("fp32", True), "torch-compile-bf16": ("bf16", True),
    "torch-eager-fp16": ("fp16", False),  # CUDA only
    "torch-cudagraphs-fp16": ("fp16", "reduce-overhead"),  # CUDA only: torch.compile with CUDA graphs
}
PEERS = ("ort-default", "ort-qdynamic", "ov-nncf", "optimum-ort", "optimum-ov", "optimum-ortq")
SPLITS = ("heldout", "train")
DEFAULT_OPTIMUM_PYTHON = str(venv_bin("optimum"))


@dataclass(frozen=True)
class BenchConfig:
    artifacts: tuple[Path, ...]
    baselines: tuple[str, ...] = ("torch-eager-fp32", "torch-eager-bf16", "torch-compile-fp32")
    peers: tuple[str, ...] = PEERS
    scenarios: tuple[str, ...] = SCENARIOS[:-1]  # all but select (optimize runs it)
    explicit: tuple[str, ...] = ()  # target ids the user named: missing -> error, not skip
    quick: bool = False
    launcher: str = "inprocess"
    device: str = "cpu"
    threads: int | None = None
    timing: str = "auto"
    # measurement
    warmup: int = 3  # calls per target and workload before any is timed
    min_time_s: float = 1.0  # per target and workload: measure until both this much time ...
    min_iters: int = 10  # ... and this many calls
    round_time_s: float = 0.1  # one target's share of a round (interleaving granularity)
    rewarm: int = 1  # untimed calls at the start of each target's turn in a round (thread pools slept meanwhile)
    settle_s: float = 0.05  # idle gap before a turn that follows another target's: its thread pools park first
    # scenarios
    latency_shape: tuple[int, int] = (1, 128)
    sweep_batches: tuple[int, ...] = (1, 4, 16)
    sweep_sequences: tuple[int, ...] = (32, 128)
    throughput_shape: tuple[int, int] = (32, 128)
    realtext_size: int = 128  # tweets
    realtext_batch: int = 8  # tweets per request
    realtext_sort: bool = True  # sort the tweets by length before forming requests (as the task layer batches)
    realtext_split: str = "heldout"
    realtext_fixed: int = 128  # the length everything is padded to, against dynamic / bucket padding
    coldstart_runs: int = 3
    # select (what `distilbert-deploy optimize` ranks by): tweets-bsN (held-out tweets, N a request, dynamic
    # padding), BxS (a fixed shape), file:PATH[@N] (a text file's lines, N a request)
    select_workloads: tuple[str, ...] = SELECT_WORKLOADS
    calibration_size: int = 300  # ov-nncf peer
    optimum_python: Path = Path(DEFAULT_OPTIMUM_PYTHON)
    parity_report: Path | None = Path("reports/parity.json")
    out: Path = Path("reports")
    name: str = "bench"
    command: str = ""

    @property
    def loop(self):
        """The harness loop's settings (timing.Timing)."""
        from .timing import Timing

        return Timing(warmup=self.warmup, min_time_s=self.min_time_s, min_iters=self.min_iters,
                      round_time_s=self.round_time_s, rewarm=self.rewarm, settle_s=self.settle_s)

    def __post_init__(self):
        if not self.artifacts:
            raise ConfigError("no artifacts given. Fix: pass artifact directories (they hold manifest.json), e.g. "
                              "artifacts/default/text-classification/onnxruntime-fp32 (`make export-onnx`)")
        if bad := [s for s in self.scenarios if s not in SCENARIOS]:
            raise ConfigError(f"unknown scenario {', '.join(bad)}. Expected some of: {', '.join(SCENARIOS)} (or all)")
        if bad := [b for b in self.baselines if b not in BASELINES]:
            raise ConfigError(f"unknown baseline {', '.join(bad)}. Expected some of: {', '.join(BASELINES)}")
        if bad := [p for p in self.peers if p not in PEERS]:
            raise ConfigError(f"unknown peer {', '.join(bad)}. Expected some of: {', '.join(PEERS)}")
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"unknown launcher '{self.launcher}'. Expected one of: {', '.join(LAUNCHERS)}")
        if self.timing not in TIMINGS:
            raise ConfigError(f"unknown timing mode '{self.timing}'. Expected one of: {', '.join(TIMINGS)}")
        if self.realtext_split not in SPLITS:
            raise ConfigError(f"unknown tweet split '{self.realtext_split}'. Expected one of: {', '.join(SPLITS)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        for what, v in (("warmup", self.warmup), ("coldstart_runs", self.coldstart_runs - 1),
                        ("min_iters", self.min_iters - 1), ("realtext_size", self.realtext_size - 1),
                        ("realtext_batch", self.realtext_batch - 1)):
            if v < 0:
                raise ConfigError(f"{what} is too small ({v}); expected a positive count")
        if self.min_time_s < 0:
            raise ConfigError(f"min_time_s must be >= 0, got {self.min_time_s}")
        if self.settle_s < 0:
            raise ConfigError(f"settle_s must be >= 0, got {self.settle_s}. Fix: pass --settle-ms 0 or more")
        for spec in self.select_workloads:
            parse_select(spec)  # ConfigError on an unknown workload
        shapes = [("latency", self.latency_shape), ("throughput", self.throughput_shape),
                  *(("sweep", (b, s)) for b in self.sweep_batches for s in self.sweep_sequences),
                  ("realtext fixed padding", (self.realtext_batch, self.realtext_fixed))]
        for what, (b, s) in shapes:
            if b < 1 or s < 2:
                raise ConfigError(f"{what} shape {b}x{s} is impossible: batch must be >= 1 and sequence >= 2 "
                                  f"([CLS] and [SEP])")
            if s > MAX_POSITIONS:
                raise ConfigError(f"{what} sequence length {s} is longer than DistilBERT's {MAX_POSITIONS} "
                                  f"positions. Fix: use a sequence length <= {MAX_POSITIONS}")


QUICK = dict(warmup=1, min_time_s=0.0, min_iters=3, round_time_s=0.02, settle_s=0.0, latency_shape=(1, 32),
             sweep_batches=(1, 4), sweep_sequences=(16, 32), throughput_shape=(8, 32), realtext_size=16, realtext_batch=4, realtext_fixed=64,
             coldstart_runs=1, calibration_size=8, baselines=("torch-eager-fp32",))


def quick(cfg: BenchConfig, **keep) -> BenchConfig:
    """The QUICK=1 preset (tiny shapes and counts, for CI); `keep` overrides it."""
    return replace(cfg, quick=True, **{**QUICK, **keep})
