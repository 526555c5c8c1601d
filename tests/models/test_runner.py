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


def test_the_event_loop_stays_free_while_workers_are_busy():
    release = threading.Event()

    async def scenario() -> None:
        runner = InferenceRunner(workers=1, max_queue=0)
        job = asyncio.create_task(runner.run(release.wait, 10))
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 5 and not job.done()
        release.set()
        await job
        runner.shutdown()

    asyncio.run(scenario())
