"""AdaptiveBatcher: merged passes, slow passes off the event loop, cheap passes on it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from mlplat.serving.batching import AdaptiveBatcher


class RecordingForward:
    """A forward pass that records the batches it got and the thread it ran on."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.batches: list[int] = []
        self.threads: list[str] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.batches.append(len(rows))
        self.threads.append(threading.current_thread().name)
        if self.seconds:
            time.sleep(self.seconds)
        return rows * 2


def run(coroutine_factory: Callable[[], object]) -> object:
    return asyncio.run(coroutine_factory())  # type: ignore[arg-type]


def test_concurrent_callers_share_passes_and_get_their_own_rows() -> None:
    forward = RecordingForward()
    batcher = AdaptiveBatcher(forward, "m", max_batch_rows=64)

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher(np.full((1, 3), i, dtype=np.float32)) for i in range(20)))

    outputs = run(main)
    assert [float(o[0, 0]) for o in outputs] == [2.0 * i for i in range(20)]  # type: ignore[union-attr]
    assert sum(forward.batches) == 20 and len(forward.batches) < 20


def test_a_slow_pass_runs_on_the_forward_thread_and_the_loop_keeps_ticking() -> None:
    forward = RecordingForward(seconds=0.05)
    batcher = AdaptiveBatcher(forward, "m", inline_max_s=0.0005)

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.002)
                ticks += 1

        task = asyncio.create_task(ticker())
        for _ in range(3):
            await batcher(np.ones((1, 3), dtype=np.float32))
        task.cancel()
        return ticks

    ticks = run(main)
    assert all(name.startswith("mlplat-forward") for name in forward.threads), forward.threads
    assert not batcher.runs_inline(1)
    assert ticks >= 20  # 150 ms of passes, the loop was free throughout (a blocked loop ticks ~0 times)


def test_cheap_passes_move_onto_the_loop_and_back_off_when_the_model_turns_slow() -> None:
    forward = RecordingForward()
    batcher = AdaptiveBatcher(forward, "m", inline_max_s=0.005)

    async def sequential(n: int) -> None:
        for _ in range(n):
            await batcher(np.ones((1, 3), dtype=np.float32))

    run(lambda: sequential(5))
    assert forward.threads[0].startswith("mlplat-forward")  # cost unknown: the first pass goes to the thread
    assert forward.threads[1:] == ["MainThread"] * 4 and batcher.runs_inline(1)
    forward.seconds = 0.02  # the model turns slow: one slow pass sends the next ones to the thread
    run(lambda: sequential(6))
    assert forward.threads[-1].startswith("mlplat-forward") and not batcher.runs_inline(1)
    assert forward.threads[5:].count("MainThread") == 1, forward.threads[5:]  # only the pass that turned slow


@pytest.mark.parametrize("enabled", [True, False], ids=["batching", "no-batching"])
def test_inline_limit_zero_always_uses_the_thread(enabled: bool) -> None:
    forward = RecordingForward()
    batcher = AdaptiveBatcher(forward, "m", enabled=enabled, inline_max_s=0.0)

    async def main() -> None:
        for _ in range(5):
            await batcher(np.ones((2, 3), dtype=np.float32))

    run(main)
    assert len(forward.threads) == 5 and all(t.startswith("mlplat-forward") for t in forward.threads)
    assert forward.batches == [2] * 5


def test_a_failing_pass_fails_every_waiting_caller_and_the_next_pass_works() -> None:
    calls = {"n": 0}

    def flaky(rows: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("device lost")
        return rows

    batcher = AdaptiveBatcher(flaky, "m")

    async def main() -> tuple[list[object], np.ndarray]:
        first = await asyncio.gather(*(batcher(np.ones((1, 2), dtype=np.float32)) for _ in range(4)),
                                     return_exceptions=True)
        return first, await batcher(np.ones((1, 2), dtype=np.float32))

    first, after = run(main)  # type: ignore[misc]
    assert all(isinstance(r, RuntimeError) and "device lost" in str(r) for r in first), first
    assert after.shape == (1, 2)


def test_cheap_small_passes_never_let_a_large_request_onto_the_loop() -> None:
    forward = RecordingForward()
    batcher = AdaptiveBatcher(forward, "m", max_batch_rows=64, inline_max_s=0.005)

    async def main() -> None:
        for _ in range(4):
            await batcher(np.ones((1, 3), dtype=np.float32))
        await batcher(np.ones((5000, 3), dtype=np.float32))  # one request, over max_batch_rows: a pass of its own

    run(main)
    assert forward.threads[1:4] == ["MainThread"] * 3  # 1-row passes measured cheap
    assert forward.batches[-1] == 5000 and forward.threads[-1].startswith("mlplat-forward")  # its size: unmeasured


def test_max_batch_rows_caps_a_merged_pass_and_max_wait_collects_more() -> None:
    forward = RecordingForward()
    capped = AdaptiveBatcher(forward, "m", max_batch_rows=4)

    async def burst(batcher: AdaptiveBatcher, n: int) -> None:
        await asyncio.gather(*(batcher(np.ones((1, 3), dtype=np.float32)) for _ in range(n)))

    run(lambda: burst(capped, 10))
    assert max(forward.batches) <= 4 and sum(forward.batches) == 10

    waiting_forward = RecordingForward()
    waiting = AdaptiveBatcher(waiting_forward, "m", max_batch_rows=64, max_wait_s=0.05)

    async def trickle() -> None:
        async def late(delay: float) -> None:
            await asyncio.sleep(delay)
            await waiting(np.ones((1, 3), dtype=np.float32))

        await asyncio.gather(*(late(0.005 * i) for i in range(5)))  # spread over 20 ms, inside the 50 ms wait

    run(trickle)
    assert waiting_forward.batches == [5]
