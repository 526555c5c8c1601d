from __future__ import annotations

import asyncio
import threading

import pytest

from app.errors import Overloaded
from app.models.runner import InferenceRunner


def test_admission_is_bounded_and_refuses_at_once_when_full():
    release = threading.Event()

    async def scenario() -> None:
        runner = InferenceRunner(workers=1, max_queue=1)
        first = asyncio.create_task(runner.run(release.wait, 10))
        second = asyncio.create_task(runner.run(release.wait, 10))
        await asyncio.sleep(0.05)
        assert runner.in_flight == 2
        with pytest.raises(Overloaded) as refused:
            await runner.run(release.wait, 10)
        assert refused.value.headers["Retry-After"] == "1"
        release.set()
        assert await first and await second
        await asyncio.sleep(0.05)
        assert runner.in_flight == 0
        assert await runner.run(lambda: 42) == 42
        runner.shutdown()

    asyncio.run(scenario())


BLOCK_S = 0.6  # the job's own length when nothing releases it
TICKING_S = 0.3  # the loop ticks this long while the job holds its thread
TICK_S = 0.01


def _loop_lateness_while_a_job_blocks(runner) -> tuple[float, bool, bool]:
    """Runs a job that holds its thread for BLOCK_S (unless released) and, meanwhile, ticks the
    event loop's own timer: how late the worst tick was, whether the job had started in its
    thread and whether it was already finished when the ticks ended."""
    started, release = threading.Event(), threading.Event()

    def job() -> str:
        started.set()
        release.wait(BLOCK_S)  # a model call holding the thread (the GIL is free meanwhile)
        return "done"

    async def scenario() -> tuple[float, bool, bool]:
        task = asyncio.create_task(runner.run(job))
        loop = asyncio.get_running_loop()
        worst = 0.0
        ticks_end = loop.time() + TICKING_S
        while loop.time() < ticks_end:
            before = loop.time()
            await asyncio.sleep(TICK_S)
            worst = max(worst, loop.time() - before - TICK_S)
        was_running, finished = started.is_set(), task.done()
        release.set()
        assert await task == "done"
        return worst, was_running, finished

    return asyncio.run(scenario())


def test_the_event_loop_stays_free_while_workers_are_busy():
    runner = InferenceRunner(workers=1, max_queue=0)
    try:
        worst, was_running, finished = _loop_lateness_while_a_job_blocks(runner)
    finally:
        runner.shutdown()
    # The job was in its worker thread the whole time the loop ticked, and not one 10 ms tick
    # was delayed by it: a runner calling the job on the loop would make a tick ~0.6 s late.
    assert was_running and not finished
    assert worst < 0.1, f"a {TICK_S * 1000:.0f} ms timer tick came {worst * 1000:.0f} ms late"
