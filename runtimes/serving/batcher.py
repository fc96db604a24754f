"""The dynamic batcher: rows from many requests -> length-grouped batches -> runtime instances in worker threads.

It knows nothing of HTTP. A row is one model input (token ids and mask, [L] or [choices, L]); a request is a
list of rows answered together. Rows join the batch forming behind the oldest queued row until it holds
max_batch_size rows, the oldest has waited max_queue_delay_s, or no admitted request is still being prepared
(nothing more is on its way, so waiting would only add latency). A batch takes the rows nearest in length to the
oldest one and is padded to its own longest row, never to the model maximum. The queue is bounded in rows:
a request that does not fit is refused with QueueFull at once."""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from ..errors import ConfigError, DeployError
from ..tasks.encoding import pad_rows


class QueueFull(DeployError):
    """The model's queue holds max_queue rows: try again later (HTTP 503 with Retry-After)."""


class DeadlineExceeded(DeployError):
    """A request's deadline passed before its rows ran (HTTP 504)."""


class BatchObserver(Protocol):
    def batch(self, size: int, tokens: int, padding: int, waits: Sequence[float], infer_s: float) -> None: ...
    def depth(self, rows: int) -> None: ...


@dataclass(eq=False)
class _Request:
    future: Future
    deadline: float | None
    outs: list
    left: int


@dataclass(eq=False)
class _Row:
    request: _Request
    index: int
    ids: np.ndarray
    mask: np.ndarray
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def length(self) -> int:
        return self.ids.shape[-1]

    @property
    def group(self) -> tuple:
        return self.ids.shape[:-1]


class DynamicBatcher:
    """runners: one infer(feed) -> outputs callable per model instance, each run by its own worker thread.
    sequence_axes: output name -> the axis of a row's output that spans the sequence (None: no such axis);
    a row's outputs are cut back to its own length along it."""

    def __init__(self, runners: Sequence[Callable[[dict], Mapping[str, np.ndarray]]], *, pad_id: int,
                 max_batch_size: int, max_queue_delay_s: float, max_queue: int,
                 sequence_axes: Mapping[str, int | None], max_padding: float = 1.0,
                 max_batch_tokens: int | None = None, observer: BatchObserver | None = None, name: str = "model"):
        if not runners:
            raise ConfigError("the batcher needs at least one model instance")
        if max_batch_size < 1 or max_queue < max_batch_size or max_queue_delay_s < 0 or max_padding < 0:
            raise ConfigError(f"batcher limits must satisfy 1 <= max_batch_size <= max_queue, delay >= 0 and "
                              f"max_padding >= 0; got max_batch_size={max_batch_size}, max_queue={max_queue}, "
                              f"delay={max_queue_delay_s}s, max_padding={max_padding}")
        self.runners, self.pad_id, self.name = list(runners), pad_id, name
        self.max_batch_size, self.max_queue, self.delay = max_batch_size, max_queue, max_queue_delay_s
        self.sequence_axes = dict(sequence_axes)
        self.max_padding = max_padding
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens must be >= 1 (or None); got {max_batch_tokens}")
        self.max_batch_tokens = max_batch_tokens
        self.observer = observer
        self._pending: list[_Row] = []
        self._preparing = 0
        self._closing = False
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._work, args=(r,), name=f"{name}-instance-{i}", daemon=True)
                         for i, r in enumerate(self.runners)]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        return len(self._pending)

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Held by a request from admission until its rows are submitted: the batcher waits (up to the delay)
        for requests being prepared before it dispatches a part-full batch."""
        with self._cond:
            self._preparing += 1
        try:
            yield
        finally:
            with self._cond:
                self._preparing -= 1
                self._cond.notify_all()

    def submit(self, rows: Sequence[tuple[np.ndarray, np.ndarray]], deadline: float | None = None) -> Future:
        """Queue one request's rows ((ids, mask) int64 pairs); the future gets their outputs in order."""
        future: Future = Future()
        if not rows:
            future.set_result([])
            return future
        request = _Request(future, deadline, [None] * len(rows), len(rows))
        with self._cond:
            if self._closing:
                raise QueueFull(f"model '{self.name}' is shutting down and takes no new requests")
            if len(self._pending) + len(rows) > self.max_queue:
                raise QueueFull(f"model '{self.name}' queue is full ({len(self._pending)} of {self.max_queue} rows "
                                f"queued; this request needs {len(rows)}). Retry later, or raise --max-queue")
            self._pending.extend(_Row(request, i, ids, mask) for i, (ids, mask) in enumerate(rows))
            self._cond.notify_all()
            depth = len(self._pending)
        self._observe_depth(depth)
        return future

    def close(self, timeout: float | None = None) -> None:
        """Answer what is queued, then stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    # worker side
    def _work(self, runner) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
                depth = len(self._pending)
            self._observe_depth(depth)
            if batch:
                self._run(runner, batch)

    def _next_batch(self) -> list[_Row] | None:
        """Under the lock: wait for rows and the batching condition; None when closed and empty."""
        while not self._pending:
            if self._closing:
                return None
            self._cond.wait()
        oldest = self._pending[0]
        while (len(self._pending) < self.max_batch_size and self._preparing > 0 and not self._closing
               and self._pending and self._pending[0] is oldest):
            left = oldest.enqueued + self.delay - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        return self._take()

    def _take(self) -> list[_Row]:
        now = time.monotonic()
        for row in self._pending:
            req = row.request
            if req.deadline is not None and now > req.deadline and not req.future.done():
                _resolve(req.future, exc=DeadlineExceeded(
                    f"the request's deadline passed after {now - row.enqueued:.3f} s in model '{self.name}' queue "
                    f"before it could run. Fix: raise the timeout or reduce the load"))
        live = [r for r in self._pending if not r.request.future.done()]
        if not live:
            self._pending = []
            return []
        anchor = live[0]
        batch = self._choose(live, anchor)
        taken = set(map(id, batch))
        self._pending = [r for r in live if id(r) not in taken]
        return batch

    def _choose(self, live: list[_Row], anchor: _Row) -> list[_Row]:
        return self._within_tokens(self._by_length(live, anchor), anchor)

    def _within_tokens(self, batch: list[_Row], anchor: _Row) -> list[_Row]:
        """The token budget (TEI's max-batch-tokens): rows x longest row stays within it, dropping the rows
        farthest in length from the anchor; the anchor always runs (alone, if it alone is over the budget)."""
        if self.max_batch_tokens is None:
            return batch
        while len(batch) > 1 and len(batch) * batch[-1].length * _choices(batch[0]) > self.max_batch_tokens:
            far = batch[-1] if batch[-1] is not anchor and (batch[0] is anchor or batch[-1].length - anchor.length
                                                          >= anchor.length - batch[0].length) else batch[0]
            batch = [r for r in batch if r is not far]
        return batch

    def _by_length(self, live: list[_Row], anchor: _Row) -> list[_Row]:
        same = sorted((r for r in live if r.group == anchor.group), key=lambda r: r.length)
        if self.max_padding < 1:
            return self._within_padding(same, anchor)
        size = self.max_batch_size
        if len(same) > size:
            # the queued rows cut by length into batches, full ones from the longest down: take the anchor's
            # (the shortest rows make the one part-full batch, filled up with the next lengths when it is taken)
            at, part = same.index(anchor), len(same) % size
            start = 0 if at < part else part + (at - part) // size * size
            same = same[start:start + size]
        return same

    def _within_padding(self, rows: list[_Row], anchor: _Row) -> list[_Row]:
        """Of length-sorted rows, up to max_batch_size grown outwards from the anchor, nearest length first, while the
        padding the batch adds stays within max_padding of its tokens (padded tokens cost as much as real ones)."""
        lo = hi = rows.index(anchor)
        while hi - lo + 1 < self.max_batch_size:
            best = None
            for a, b in ((lo - 1, hi), (lo, hi + 1)):
                if a < 0 or b >= len(rows):
                    continue
                tokens = (b - a + 1) * rows[b].length
                pad = 1 - sum(r.length for r in rows[a:b + 1]) / tokens
                if pad <= self.max_padding and (best is None or pad < best[0]):
                    best = (pad, a, b)
            if best is None:
                break
            _, lo, hi = best
        return rows[lo:hi + 1]

    def _run(self, runner, batch: list[_Row]) -> None:
        longest = max(r.length for r in batch)
        shape = (len(batch), *batch[0].group, longest)
        ids = np.full(shape, self.pad_id, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        for j, r in enumerate(batch):
            ids[j, ..., :r.length] = r.ids
            mask[j, ..., :r.length] = r.mask
        start = time.monotonic()
        try:
            res = runner({"input_ids": ids, "attention_mask": mask})
        except BaseException as e:  # every waiting request learns why; the worker lives on
            for req in {id(r.request): r.request for r in batch}.values():
                _resolve(req.future, exc=e)
            return
        infer_s = time.monotonic() - start
        if self.observer:
            real = int(sum(int(r.mask.sum()) for r in batch))
            self.observer.batch(len(batch), int(mask.size), int(mask.size) - real,
                                [start - r.enqueued for r in batch], infer_s)
        for j, r in enumerate(batch):
            req = r.request
            req.outs[r.index] = {n: _cut(res[n][j], self.sequence_axes.get(n), r.length) for n in res}
            req.left -= 1
            if req.left == 0:
                _resolve(req.future, result=req.outs)

    def _observe_depth(self, depth: int) -> None:
        if self.observer:
            self.observer.depth(depth)


def _choices(row: _Row) -> int:
    return int(np.prod(row.group, dtype=np.int64))  # multiple-choice rows are [choices, L]


def _cut(a: np.ndarray, axis: int | None, length: int) -> np.ndarray:
    if axis is None or a.shape[axis] == length:
        return a
    return a[(slice(None),) * axis + (slice(0, length),)]


def _resolve(future: Future, *, result=None, exc: BaseException | None = None) -> None:
    """Set a future once; one the client gave up on (cancelled) is left as it is."""
    if future.done():
        return
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except Exception:  # cancelled between the check and the set
        pass


def text_rows(rows: Sequence, pad_id: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The task layer's rows (token id lists; multiple-choice: a list per choice) as (ids, mask) arrays,
    the choices of one row padded to its longest."""
    feeds = [pad_rows([row], pad_id) for row in rows]
    return [(f["input_ids"][0], f["attention_mask"][0]) for f in feeds]
