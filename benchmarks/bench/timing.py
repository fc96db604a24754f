"""The one timing loop of every benchmark here: the bench's scenarios (core.measure), the INT8 floor
(benchmarks/int8_floor.py), the service bench's in-process ceiling (serve_bench/ceiling.py) and the optimize
profile's side-by-side (optimize/profiles.py). The ov_shapes probes, which alternate models call by call and time
some calls of a pass, use its second form, rotated_passes. Every host-timed call goes through timed_call: the
bench's CPU runners, the operator profiles and the in-process side of the service bench's paired c=1 pairs too
(their requests are timed by the client around the exchange); CUDA runners time with events or a sync.

Warm-up, then rounds over every (handle, workload) pair, the order rotated each round, until each pair has
>= min_time_s of timed calls and >= min_iters calls (a real-text workload: whole passes over its requests), or
max_time_s when one is set. A handle runs n timed calls of a workload's feeds and returns their ns: the bench's
launchers (in-process or a subprocess worker) or CallHandle, any Python callable over a list of items."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable

from .workloads import Workload

REWARM_BELOW_S = 0.02  # longer calls: a thread pool's wake-up (ms) is noise, and a re-warm call would double the cost


@dataclass(frozen=True)
class Timing:
    warmup: int = 3  # untimed calls per pair before any is timed
    min_time_s: float = 1.0  # per pair: measure until both this much time ...
    min_iters: int = 10  # ... and this many calls
    round_time_s: float = 0.1  # one pair's share of a round (interleaving granularity) ...
    calls_per_turn: int | None = None  # ... or a fixed number of calls a turn
    rewarm: int = 1  # untimed calls at the start of each turn (thread pools slept meanwhile)
    settle_s: float = 0.05  # idle gap before a turn that follows another handle's: its thread pools park first
    max_time_s: float | None = None  # a pair stops once it has this much (and >= 1 call), even below min_iters


def timed_call(call: Callable, *args) -> tuple[object, int]:
    """(call(*args), its ns): perf_counter_ns around one blocking call, the timer of every benchmark here."""
    t = time.perf_counter_ns()
    out = call(*args)
    return out, time.perf_counter_ns() - t


def rotated_passes(passes: dict, rounds: int, *, warm_rounds: int = 1,
                   settle_s: float = 0.05) -> dict[object, list[int]]:
    """{key: ns} from rounds of one pass per entry of `passes`, their order rotated each round and settle_s idle
    before each pass. A pass is a function of `timed(key, call, *args)`, which it calls for each call to be timed
    under `key` (it may make other calls untimed); the first warm_rounds rounds are run but not kept."""
    samples: dict[object, list[int]] = {}
    names = list(passes)
    for r in range(warm_rounds + rounds):
        def timed(key, call, *args, keep=r >= warm_rounds):
            out, ns = timed_call(call, *args)
            if keep:
                samples.setdefault(key, []).append(ns)
            return out

        for name in names[r % len(names):] + names[:r % len(names)]:
            if settle_s:
                time.sleep(settle_s)
            passes[name](timed)
    return samples


class CallHandle:
    """A handle over a plain callable: each call takes the next of `items`, in order, cycling; with no items, the
    callable takes no argument."""

    def __init__(self, call: Callable, items: list | None = None):
        self.call, self.items, self.k = (call, list(items), 0) if items is not None else (lambda _: call(), [None], 0)

    def set_workload(self, w: Workload) -> None:
        self.k = 0

    def run(self, key: str, n: int, rewarm: int = 0) -> list[int]:
        for _ in range(rewarm if n else 0):
            self.call(self.items[self.k % len(self.items)])
        out = []
        for _ in range(n):
            out.append(timed_call(self.call, self.items[self.k % len(self.items)])[1])
            self.k += 1
        return out

    def reset(self, key: str) -> None:
        self.k = 0

    def drop(self, key: str) -> None:
        pass


def time_calls(calls: dict[str, Callable | tuple[Callable, list]], timing: Timing,
               label: str = "timing") -> dict[str, list[int]]:
    """{name: timed ns} of plain callables (or (callable, items) pairs), interleaved on one workload."""
    w = Workload(label, 1, 0)
    handles = {n: CallHandle(*c) if isinstance(c, tuple) else CallHandle(c) for n, c in calls.items()}
    ns = interleaved(handles, [w], timing, label=label)
    return {n: ns[n, w.key] for n in calls}


def interleaved(handles: dict, workloads: list[Workload], timing: Timing, *, label: str = "timing",
                full_pass: Callable[[str], bool] = lambda tid: False, progress=None,
                log=None) -> dict[tuple[str, str], list[int]]:
    """{(handle id, workload key): timed ns} for every pair. full_pass(tid): warm a real-text workload over one
    whole pass even with warmup 0 (torch.compile graphs, static bucket models)."""
    pairs = [(tid, w) for w in workloads for tid in handles]
    key = lambda w: f"{label}:{w.key}"
    bar = progress.add_task(f"{label}: warm-up", total=len(pairs)) if progress else None
    chunk, samples, rewarm = {}, {}, {}
    for tid, w in pairs:
        h = handles[tid]
        h.set_workload(replace(w, key=key(w)))
        warm = timing.warmup
        if w.requests and (timing.warmup or full_pass(tid)):
            # one whole pass: every distinct shape seen before timing (torch.compile graphs, OpenVINO's static
            # bucket models, ORT's arena), as a service's warm-up does
            warm = max(warm, w.calls)
        per_call = 0.0
        if warm or not timing.calls_per_turn:  # one call at least, to size the turns
            per_call = statistics.median(h.run(key(w), max(warm, 1))) / 1e9
        h.reset(key(w))
        chunk[tid, w.key] = timing.calls_per_turn or int(min(1000, max(1, timing.round_time_s / max(per_call, 1e-6))))
        rewarm[tid, w.key] = timing.rewarm if per_call < REWARM_BELOW_S else 0
        samples[tid, w.key] = []
    if progress:
        progress.update(bar, description=f"{label}: measuring")
    min_ns = timing.min_time_s * 1e9
    max_ns = timing.max_time_s * 1e9 if timing.max_time_s is not None else None

    def enough(xs: list[int]) -> bool:
        return (len(xs) >= timing.min_iters and sum(xs) >= min_ns) or (max_ns is not None and xs and sum(xs) >= max_ns)

    done: set = set()
    r = 0
    last = None  # the handle whose turn ran last
    while len(done) < len(pairs):
        order = pairs[r % len(pairs):] + pairs[:r % len(pairs)]
        for tid, w in order:
            if (tid, w.key) in done:
                continue
            xs = samples[tid, w.key]
            n = chunk[tid, w.key]
            if w.requests:
                left = -len(xs) % w.calls
                n = left if enough(xs) else min(n, left or w.calls)  # finish the pass, then stop
            if n:
                if last is not None and last != tid and timing.settle_s:
                    time.sleep(timing.settle_s)
                xs += handles[tid].run(key(w), n, rewarm[tid, w.key])
                last = tid
            if enough(xs) and (not w.requests or len(xs) % w.calls == 0):
                done.add((tid, w.key))
                if log:
                    log(f"  {label} {w.key} {tid}: n={len(xs)}, p50 {statistics.median(xs) / 1e6:.3g} ms")
                if progress:
                    progress.advance(bar)
        r += 1
        if progress:
            progress.update(bar, description=f"{label}: round {r}")
    for tid, w in pairs:
        handles[tid].drop(key(w))
    return samples
