"""The local engine: a collection's pending observations through ``answering.answer`` on this
machine's event loop, the decode and the models on the inference workers (all cores), a bounded
number in flight; each outcome committed to the journal as it comes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from app.batch.answering import Answered, Asked, answer
from app.batch.collection import Observation
from app.identification.request import MAX_PHOTOS
from app.wiring import Services

# Called on the event loop's thread with each outcome: (its place in the source, it, its answer).
Record = Callable[[int, Observation, Answered], None]


def in_flight(services: Services) -> int:
    """Enough observations to keep every worker busy while others read or fetch, never more
    photos than the runner admits (a refusal would fail an observation for nothing)."""
    workers = services.settings.admission.inference_workers
    return max(1, min(2 * workers + 2, services.runner.capacity // MAX_PHOTOS))


async def answer_all(
    services: Services, pending: Iterable[tuple[int, Observation]], asked: Asked, record: Record
) -> None:
    """``pending``: (its place in the source, observation); ``record`` is called on the event
    loop's thread, in the order answers come."""
    limit = in_flight(services)
    todo: Iterator[tuple[int, Observation]] = iter(pending)
    running: dict[asyncio.Task[Answered], tuple[int, Observation]] = {}

    def start(n: int) -> None:
        for seq, observation in islice(todo, n):
            running[asyncio.create_task(answer(services, seq, observation, asked))] = (seq, observation)

    start(limit)
    while running:
        finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            seq, observation = running.pop(task)
            record(seq, observation, task.result())
        start(limit - len(running))
