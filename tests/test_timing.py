"""The harness's one timing loop (benchmarks/bench/timing.py), which the bench, the INT8 floor and the service
bench's ceiling share: warm-up, rotated interleaving, the stopping rule, the time bound, whole passes."""
from __future__ import annotations

from benchmarks.bench.timing import CallHandle, Timing, interleaved
from benchmarks.bench.workloads import Workload


class Fake:
    """A handle whose calls 'take' ms_per_call (no sleeping), logging every turn."""

    def __init__(self, name: str, ms_per_call: float, turns: list):
        self.name, self.ns, self.turns = name, int(ms_per_call * 1e6), turns
        self.untimed = 0

    def set_workload(self, w):
        pass

    def run(self, key, n, rewarm=0):
        self.turns.append((self.name, n, rewarm))
        self.untimed += rewarm if n else 0
        return [self.ns] * n

    def reset(self, key):
        pass

    def drop(self, key):
        pass


def fixed(key="w"):
    return Workload(key, 1, 8)


def test_every_pair_runs_until_both_the_time_and_the_call_count_and_turns_rotate():
    turns = []
    handles = {"a": Fake("a", 1.0, turns), "b": Fake("b", 4.0, turns)}
    t = Timing(warmup=2, min_time_s=0.05, min_iters=5, round_time_s=0.01, settle_s=0.0)
    got = interleaved(handles, [fixed()], t)
    a, b = got["a", "w"], got["b", "w"]
    assert sum(a) >= 0.05e9 and len(a) >= 5 and sum(b) >= 0.05e9 and len(b) >= 5
    assert turns[:2] == [("a", 2, 0), ("b", 2, 0)]  # the warm-up: 2 calls each, not kept
    timed = [x for x in turns[2:] if x[1]]
    assert {n for name, n, _ in timed if name == "a"} == {10} and {n for name, n, _ in timed if name == "b"} == {2}
    assert [x[0] for x in timed[:4]] == ["a", "b", "b", "a"]  # round 2 starts one pair later
    assert all(r == 1 for _, _, r in timed)  # calls under 20 ms get one untimed re-warm call a turn


def test_fixed_turns_give_exactly_rounds_of_iters_calls_with_no_rewarm():
    """The INT8 floor's method: `rounds` rounds of `iters` calls per candidate."""
    turns = []
    handles = {n: Fake(n, 0.5, turns) for n in "xyz"}
    got = interleaved(handles, [fixed()], Timing(warmup=3, min_time_s=0.0, min_iters=4 * 3, calls_per_turn=3,
                                                 rewarm=0, settle_s=0.0))
    assert all(len(got[n, "w"]) == 12 for n in "xyz")
    assert [n for _, n, _ in turns[3:]] == [3] * 12 and all(r == 0 for *_, r in turns)


def test_the_time_bound_stops_a_slow_pair_below_its_call_count():
    turns = []
    got = interleaved({"slow": Fake("slow", 300.0, turns)}, [fixed()],
                      Timing(warmup=0, min_time_s=0.1, min_iters=1000, calls_per_turn=1, max_time_s=1.0, settle_s=0))
    assert len(got["slow", "w"]) == 4  # 4 x 300 ms passes 1 s; 1000 calls would not be reached for minutes


def test_real_text_workloads_stop_on_whole_passes():
    turns = []
    w = Workload("tweets", 1, 8, requests=tuple(((1, 2, 3),) for _ in range(7)), padding="dynamic")
    got = interleaved({"a": Fake("a", 1.0, turns)}, [w], Timing(warmup=1, min_time_s=0.0, min_iters=10,
                                                                round_time_s=0.003, settle_s=0.0))
    assert len(got["a", "tweets"]) == 14  # two passes of 7 requests, not 10 calls
    assert turns[0] == ("a", 7, 0)  # warm-up: one whole pass (every shape seen before timing)


def test_call_handle_cycles_its_items_in_order_from_the_start_after_the_warm_up():
    seen = []
    h = CallHandle(seen.append, ["p", "q", "r"])
    got = interleaved({"h": h}, [fixed()], Timing(warmup=2, min_time_s=0.0, min_iters=4, calls_per_turn=2,
                                                  rewarm=0, settle_s=0.0))
    assert seen == ["p", "q", "p", "q", "r", "p"] and len(got["h", "w"]) == 4
    assert all(isinstance(x, int) and x > 0 for x in got["h", "w"])
