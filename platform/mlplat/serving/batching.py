"""Adaptive batching: concurrent requests share one forward pass, and no slow pass runs on the loop.

Passes run one at a time. While a pass runs, new requests queue; the next pass takes all of them,
up to `max_batch_rows`. An idle server therefore adds no wait to a lone request, and a busy one
batches exactly as much as its load needs. `max_wait_s` optionally holds a pass back to collect more.

Where a pass runs is decided by what passes of that size cost, measured per power-of-two row count:
an estimate starts unknown (the first pass of a size goes to the thread), rises at once to a slower
pass and decays toward cheaper ones, so cheap 1-row passes never let a 10k-row request onto the
loop. Passes run
- on the dedicated forward thread when a pass may take longer than `inline_max_s`, so the event
  loop keeps accepting requests (a slow synchronous predict stalls a KServe server; kserve issue
  3950);
- on the event loop itself when passes are cheaper than that: a thread round trip costs ~50 µs
  of CPU plus GIL hand-offs, more than a small network's forward pass, and the loop is blocked no
  longer than it is by parsing one request's JSON. Requests that arrive in the same loop tick are
  still merged into one pass.
`inline_max_s=0` always uses the thread.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mlplat.serving import metrics

_DECAY = 0.2  # weight of a pass cheaper than the estimate: ~6 cheap passes bring a 4x estimate back down


class AdaptiveBatcher:
    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], model: str, max_batch_rows: int = 64,
                 max_wait_s: float = 0.0, enabled: bool = True, inline_max_s: float = 0.0005) -> None:
        self.forward, self.model = forward, model
        self.max_batch_rows, self.max_wait_s, self.enabled = max(1, max_batch_rows), max_wait_s, enabled
        self.inline_max_s = inline_max_s
        self.pass_seconds: dict[int, float] = {}  # estimated wall time of a pass, by rows.bit_length()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlplat-forward")
        self._queue: collections.deque[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = collections.deque()
        self._draining = False
        self._batch_rows = metrics.BATCH_ROWS.labels(model)

    def runs_inline(self, rows: int) -> bool:
        """Whether a pass over `rows` rows runs on the event loop (measured passes of its size are cheap)."""
        return self.pass_seconds.get(rows.bit_length(), math.inf) < self.inline_max_s

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return await self._run(rows)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._queue.append((rows, future))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await future

    async def _run(self, rows: np.ndarray) -> np.ndarray:
        if self.runs_inline(len(rows)):
            return self._forward(rows)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._forward, rows)

    def _forward(self, rows: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        outputs = self.forward(rows)
        elapsed = time.perf_counter() - started
        size = len(rows).bit_length()
        estimate = self.pass_seconds.get(size, 0.0)
        # rises at once, falls gradually: one slow pass sends the next ones of its size to the thread
        self.pass_seconds[size] = elapsed if elapsed >= estimate else (1 - _DECAY) * estimate + _DECAY * elapsed
        self._batch_rows.observe(len(rows))
        return outputs

    async def _drain(self) -> None:
        try:
            while self._queue:
                queued = sum(len(rows) for rows, _ in self._queue)
                if self.max_wait_s > 0 and queued < self.max_batch_rows:
                    await asyncio.sleep(self.max_wait_s)
                elif self.runs_inline(queued):
                    await asyncio.sleep(0)  # let requests already read in this tick join the pass
                batch = self._take()
                inputs = batch[0][0] if len(batch) == 1 else np.concatenate([rows for rows, _ in batch])
                try:
                    outputs = await self._run(inputs)
                except Exception as exc:  # every waiting request gets the failure, none hangs
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for rows, future in batch:
                    if not future.done():  # the client may have gone away
                        future.set_result(outputs[start:start + len(rows)])
                    start += len(rows)
        finally:
            self._draining = False

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]:
        batch = [self._queue.popleft()]
        rows = len(batch[0][0])
        while self._queue and rows + len(self._queue[0][0]) <= self.max_batch_rows:
            item = self._queue.popleft()
            batch.append(item)
            rows += len(item[0])
        return batch

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
