"""Adaptive batching: concurrent requests share one forward pass, off the event loop.

Forward passes run one at a time on a dedicated thread, so the event loop keeps accepting
requests (a synchronous predict on the loop stalls a KServe server; kserve issue 3950). While a
pass runs, new requests queue; the next pass takes all of them, up to `max_batch_rows`. An idle
server therefore adds no wait to a lone request, and a busy one batches exactly as much as its
load needs. `max_wait_s` optionally holds a pass back to collect more rows.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mlplat.serving import metrics


class AdaptiveBatcher:
    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], model: str, max_batch_rows: int = 64,
                 max_wait_s: float = 0.0, enabled: bool = True) -> None:
        self.forward, self.model = forward, model
        self.max_batch_rows, self.max_wait_s, self.enabled = max(1, max_batch_rows), max_wait_s, enabled
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlplat-forward")
        self._queue: collections.deque[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = collections.deque()
        self._draining = False
        self._batch_rows = metrics.BATCH_ROWS.labels(model)

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await loop.run_in_executor(self.executor, self._forward, rows)
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._queue.append((rows, future))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await future

    def _forward(self, rows: np.ndarray) -> np.ndarray:
        self._batch_rows.observe(len(rows))
        return self.forward(rows)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.max_wait_s > 0 and self._queued_rows() < self.max_batch_rows:
                    await asyncio.sleep(self.max_wait_s)
                batch = self._take()
                inputs = batch[0][0] if len(batch) == 1 else np.concatenate([rows for rows, _ in batch])
                try:
                    outputs = await loop.run_in_executor(self.executor, self._forward, inputs)
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

    def _queued_rows(self) -> int:
        return sum(len(rows) for rows, _ in self._queue)

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
