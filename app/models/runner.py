"""Bounded admission in front of the worker threads that decode and infer.

The event loop only awaits; CPU work runs on ``workers`` threads. At most ``workers + max_queue``
jobs are admitted; one more is refused at once with 503 + Retry-After rather than queued
without bound (the shape of text-embeddings-inference's ``try_acquire_permit``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from app.errors import Overloaded

T = TypeVar("T")


class InferenceRunner:
    def __init__(self, *, workers: int, max_queue: int) -> None:
        self.workers = workers
        self.capacity = workers + max_queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infer")
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _release(self) -> None:
        self._in_flight -= 1

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._in_flight >= self.capacity:
            raise Overloaded(
                f"the server is busy ({self._in_flight} images in progress); retry shortly",
                retry_after_s=1,
            )
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        job = self._executor.submit(fn, *args)

        def finished(_: Future[T]) -> None:
            # Counted down when the thread finishes, not when the caller gives up: a cancelled
            # request still occupies its worker until the model call returns.
            with contextlib.suppress(RuntimeError):  # the loop may be closed at shutdown
                loop.call_soon_threadsafe(self._release)

        job.add_done_callback(finished)
        return await asyncio.wrap_future(job)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
