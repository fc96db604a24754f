"""The dynamic batcher alone (no HTTP, no model): fake runners record the batches they are handed, so grouping by
length, per-batch padding, splitting, ordering, the queue bound, deadlines and the dispatch rule are checked exactly.
Every wait is bounded."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runtimes.errors import ConfigError
from runtimes.serving.batcher import DeadlineExceeded, DynamicBatcher, QueueFull, text_rows

PAD = 0


class Recorder:
    """A runner that returns, per row, its own ids (so answers can be traced back) and records every feed.
    `gate` (when set) holds each call until released."""

    def __init__(self, gate: threading.Event | None = None):
        self.feeds, self.gate = [], gate
        self.entered = threading.Event()

    def __call__(self, feed):
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        self.feeds.append({k: v.copy() for k, v in feed.items()})
        ids = feed["input_ids"]
        return {"echo": ids.astype(np.float32), "first": ids[..., 0].astype(np.float32)}


def make(runner, **kw):
    opts = dict(pad_id=PAD, max_batch_size=4, max_queue_delay_s=0.0, max_queue=64,
                sequence_axes={"echo": 0, "first": None})
    return DynamicBatcher([runner], **{**opts, **kw})


def row(*ids):
    a = np.array(ids, dtype=np.int64)
    return a, np.ones_like(a)


def test_answers_come_back_in_order_cut_to_each_row():
    rec = Recorder()
    b = make(rec)
    rows = [row(5, 6, 7), row(8), row(9, 10)]
    outs = b.submit(rows).result(10)
    assert [o["echo"].tolist() for o in outs] == [[5, 6, 7], [8], [9, 10]]
    assert [o["first"].item() for o in outs] == [5, 8, 9]
    b.close(10)


def test_a_request_larger_than_the_batch_is_split_and_joined_in_order():
    rec = Recorder()
    b = make(rec, max_batch_size=2)
    rows = [row(*range(1, n + 2)) for n in range(7)]
    outs = b.submit(rows).result(10)
    assert [o["echo"].tolist() for o in outs] == [list(range(1, n + 2)) for n in range(7)]
    assert all(f["input_ids"].shape[0] <= 2 for f in rec.feeds) and sum(f["input_ids"].shape[0] for f in rec.feeds) == 7
    b.close(10)


def test_rows_are_grouped_by_length_and_padded_per_batch():
    """Held while queued, 8 rows of lengths 1..8 arrive shuffled; with batches of 4 the oldest row (length 7) goes
    with its nearest lengths (5..8), the rest (1..4) together: each batch is padded to its own longest row only."""
    gate = threading.Event()
    rec = Recorder(gate)
    b = make(rec, max_batch_size=4)
    blocker = b.submit([row(99)])  # occupies the only instance while the others queue
    assert rec.entered.wait(10)
    lengths = [7, 2, 5, 1, 8, 3, 6, 4]
    futures = [b.submit([row(*([n] * n))]) for n in lengths]
    gate.set()
    outs = [f.result(10)[0]["echo"].tolist() for f in futures]
    assert outs == [[n] * n for n in lengths]
    blocker.result(10)
    shapes = [f["input_ids"].shape for f in rec.feeds[1:]]
    assert shapes == [(4, 8), (4, 4)]
    first = rec.feeds[1]
    assert sorted(int(m.sum()) for m in first["attention_mask"]) == [5, 6, 7, 8]
    assert (first["input_ids"][first["attention_mask"] == 0] == PAD).all()
    b.close(10)


def test_rows_of_different_choice_counts_never_share_a_batch():
    rec = Recorder()
    b = make(rec)
    two = np.array([[1, 2], [3, 4]], dtype=np.int64)
    three = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64)
    gate = threading.Event()
    rec.gate = gate
    f = b.submit([(two, np.ones_like(two)), (three, np.ones_like(three)), (two, np.ones_like(two))])
    gate.set()
    outs = f.result(10)
    assert [o["first"].tolist() for o in outs] == [[1, 3], [1, 3, 5], [1, 3]]
    assert all(len({r.shape for r in feed["input_ids"]}) == 1 for feed in rec.feeds)
    b.close(10)


def test_queue_is_bounded_and_refuses_at_once():
    gate = threading.Event()
    rec = Recorder(gate)
    b = make(rec, max_batch_size=1, max_queue=3)
    running = b.submit([row(1)])
    assert rec.entered.wait(10)
    queued = b.submit([row(2), row(3)])
    with pytest.raises(QueueFull, match="queue is full"):
        b.submit([row(4), row(5)])
    assert b.depth == 2
    b.submit([row(6)])  # exactly fills it
    gate.set()
    assert [o["first"].item() for o in queued.result(10)] == [2, 3]
    running.result(10)
    b.close(10)


def test_expired_requests_fail_with_deadline_exceeded_and_never_run():
    gate = threading.Event()
    rec = Recorder(gate)
    b = make(rec, max_batch_size=1)
    running = b.submit([row(1)])
    assert rec.entered.wait(10)
    late = b.submit([row(2)], deadline=time.monotonic() + 0.01)
    time.sleep(0.05)
    gate.set()
    with pytest.raises(DeadlineExceeded, match="deadline passed"):
        late.result(10)
    running.result(10)
    assert all(2 not in f["input_ids"] for f in rec.feeds)
    b.close(10)


def test_waits_for_requests_being_prepared_but_not_for_nobody():
    """Nothing being prepared: a lone row runs at once, whatever the delay. A request being prepared: the oldest row
    waits for it and the two share one batch. The delay is an hour, so only the prepared request can end the wait,
    and the 30 s timeouts only bound a hang: no duration is asserted."""
    rec = Recorder()
    ran = threading.Event()

    def runner(feed):
        ran.set()
        return rec(feed)

    b = make(runner, max_queue_delay_s=3600.0)
    assert b.submit([row(1)]).result(30)[0]["first"].item() == 1  # ran without waiting for the hour
    ran.clear()
    with b.preparing():
        first = b.submit([row(2)])
        # held for the request still being prepared: a correct batcher never runs it here (the delay is an hour),
        # a batcher that does not wait runs it at once and sets `ran` well within this watch
        assert not ran.wait(0.5) and not first.done()
        second = b.submit([row(3)])
    assert first.result(30)[0]["first"].item() == 2 and second.result(30)[0]["first"].item() == 3
    assert [f["input_ids"].shape[0] for f in rec.feeds] == [1, 2]  # the lone row alone, then both in one batch
    b.close(30)


def test_a_runner_error_reaches_every_request_of_the_batch_and_the_worker_lives_on():
    calls = []

    def flaky(feed):
        calls.append(feed["input_ids"].shape)
        if len(calls) == 1:
            raise RuntimeError("backend exploded")
        return {"first": feed["input_ids"][..., 0].astype(np.float32)}

    b = DynamicBatcher([flaky], pad_id=0, max_batch_size=4, max_queue_delay_s=0, max_queue=8,
                       sequence_axes={"first": None})
    with pytest.raises(RuntimeError, match="exploded"):
        b.submit([row(1)]).result(10)
    assert b.submit([row(7)]).result(10)[0]["first"].item() == 7
    b.close(10)


def test_instances_run_in_parallel_threads():
    both = threading.Barrier(2, timeout=10)

    def runner(feed):
        both.wait()  # only returns when two instances run at once
        return {"first": feed["input_ids"][..., 0].astype(np.float32)}

    b = DynamicBatcher([runner, runner], pad_id=0, max_batch_size=1, max_queue_delay_s=0, max_queue=8,
                       sequence_axes={"first": None})
    f1, f2 = b.submit([row(1)]), b.submit([row(2)])
    assert f1.result(10)[0]["first"].item() == 1 and f2.result(10)[0]["first"].item() == 2
    b.close(10)


def test_close_answers_what_is_queued_then_refuses():
    rec = Recorder()
    b = make(rec)
    f = b.submit([row(1), row(2)])
    b.close(10)
    assert len(f.result(10)) == 2
    with pytest.raises(QueueFull, match="shutting down"):
        b.submit([row(3)])


def test_text_rows_pad_choices_within_a_row():
    (ids, mask), (flat_ids, flat_mask) = text_rows([[[101, 5, 102], [101, 102]], [101, 7, 8, 102]], pad_id=0)
    assert ids.tolist() == [[101, 5, 102], [101, 102, 0]] and mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert flat_ids.tolist() == [101, 7, 8, 102] and flat_mask.tolist() == [1, 1, 1, 1]


def test_bad_limits_are_config_errors():
    with pytest.raises(ConfigError, match="max_batch_size <= max_queue"):
        DynamicBatcher([Recorder()], pad_id=0, max_batch_size=8, max_queue_delay_s=0, max_queue=4, sequence_axes={})
    with pytest.raises(ConfigError, match="at least one model instance"):
        DynamicBatcher([], pad_id=0, max_batch_size=1, max_queue_delay_s=0, max_queue=4, sequence_axes={})


def test_padding_budget_keeps_far_lengths_out_of_a_batch():
    """max_padding 0.11: queued lengths 10, 30, 10, 12, 11 with the first 10 oldest -> its batch grows 10, 10, 11, 12
    (pads 5 of 48 tokens, 10.4%); adding 30 would pad 77 of 150 tokens, so it runs alone. At 0.1 the 12 stays out."""
    gate = threading.Event()
    rec = Recorder(gate)
    b = make(rec, max_batch_size=8, max_padding=0.11)
    blocker = b.submit([row(99)])
    assert rec.entered.wait(10)
    futures = [b.submit([row(*([n] * n))]) for n in (10, 30, 10, 12, 11)]
    gate.set()
    assert [f.result(10)[0]["echo"].tolist() for f in futures] == [[n] * n for n in (10, 30, 10, 12, 11)]
    blocker.result(10)
    assert [f["input_ids"].shape for f in rec.feeds[1:]] == [(4, 12), (1, 30)]
    b.close(10)
    tight = Recorder(threading.Event())
    b = make(tight, max_batch_size=8, max_padding=0.1)
    blocker = b.submit([row(99)])
    assert tight.entered.wait(10)
    futures = [b.submit([row(*([n] * n))]) for n in (10, 30, 10, 12, 11)]
    tight.gate.set()
    [f.result(10) for f in futures + [blocker]]
    assert [f["input_ids"].shape for f in tight.feeds[1:]] == [(3, 11), (1, 30), (1, 12)]
    b.close(10)


def test_token_budget_caps_rows_times_longest_and_answers_everything():
    """max_batch_tokens=12: 8 rows of 3 tokens run as batches of 4 (4 x 3 = 12), a 10-token row runs with at most
    one other (2 x 10 > 12 alone), a 20-token row alone (over the budget by itself, it still runs)."""
    rec = Recorder(threading.Event())
    b = make(rec, max_batch_size=8, max_padding=1.0, max_batch_tokens=12)
    first = b.submit([row(99)])  # holds the worker so the rest queue up together
    assert rec.entered.wait(10)
    short = b.submit([row(i, i, i) for i in range(1, 9)])
    long = b.submit([row(*[50] * 10), row(*[60] * 20)])
    rec.gate.set()
    assert [o["first"].item() for o in short.result(10)] == list(range(1, 9))
    assert [o["echo"].shape[0] for o in long.result(10)] == [10, 20]
    first.result(10)
    b.close(10)
    for feed in rec.feeds[1:]:
        rows_, longest = feed["input_ids"].shape
        assert rows_ == 1 or rows_ * longest <= 12, feed["input_ids"].shape
    assert sorted(f["input_ids"].shape for f in rec.feeds[1:]) == [(1, 10), (1, 20), (4, 3), (4, 3)]


def test_token_budget_must_be_positive():
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        make(Recorder(), max_batch_tokens=0)
