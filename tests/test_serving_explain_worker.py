"""The explain worker (mlplat.serving.explain_worker) on its own, with a real spawned child: a call
cancelled while it waits, for the explanation or for the child to load, leaves no thread on the pipe
that would take the next call's answer; the next call gets its own explanation from a fresh child."""

from __future__ import annotations

import asyncio

import numpy as np
import psutil
from mlplat.serving.explain_worker import ExplainWorker
from spinning_explainer import SPIN, spinning_explainer

QUICK = np.zeros((1, 3))
SPINNING = np.array([[SPIN + 120, 0.0, 0.0]])  # would spin two minutes


async def cancel_after(worker: ExplainWorker, rows: np.ndarray, seconds: float) -> None:
    task = asyncio.ensure_future(worker.explain(rows, timeout_s=300))
    await asyncio.sleep(seconds)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def test_a_cancelled_explanation_stops_the_child_and_the_next_call_is_answered() -> None:
    worker = ExplainWorker(spinning_explainer, "m")

    async def scenario() -> tuple[int, int, list[dict]]:
        first = await worker.explain(QUICK, timeout_s=120)  # loads the child
        spinning_pid = worker.pid
        await cancel_after(worker, SPINNING, 0.5)
        # the next explanation is answered by a fresh child, not queued behind two minutes of spinning
        return first[0]["pid"], spinning_pid, await asyncio.wait_for(worker.explain(QUICK, timeout_s=60), 120)

    try:
        first_pid, spinning_pid, after = asyncio.run(scenario())
        assert first_pid == spinning_pid
        assert not psutil.pid_exists(spinning_pid)  # the spinning child was stopped
        assert len(after) == 1 and after[0]["pid"] not in (spinning_pid, None)
    finally:
        worker.stop()


def test_a_call_cancelled_while_the_child_loads_leaves_the_next_call_its_child() -> None:
    worker = ExplainWorker(spinning_explainer, "m")

    async def scenario() -> list[dict]:
        await cancel_after(worker, QUICK, 0.05)  # cancelled before the child said "ready"
        return await asyncio.wait_for(worker.explain(QUICK, timeout_s=60), 120)

    try:
        after = asyncio.run(scenario())
        assert len(after) == 1 and after[0]["pid"] == worker.pid
    finally:
        worker.stop()
