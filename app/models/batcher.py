"""Dynamic micro-batching for models that gain from it (SavedModels: the InceptionV3 embedder).

Requests hand their decoded pixels to the model's batcher thread and await the result without
holding a worker thread. The thread takes what is queued, up to MODELS_BATCH_MAX_SIZE, waiting at
most MODELS_BATCH_MAX_WAIT_MS for more, and makes one model call: at low load a request waits
(almost) nothing, under load the batches grow by themselves while the previous call runs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

from app.errors import Overloaded

log = logging.getLogger(__name__)

Pixels = npt.NDArray[np.generic]
Outputs = npt.NDArray[np.float32]  # probabilities or features, one row per image


class MicroBatcher:
    def __init__(
        self,
        name: str,
        predict: Callable[[Pixels], Outputs],
        *,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.name = name
        self._predict = predict
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000
        self._max_queue = max_queue
        self.on_batch = on_batch
        self._queue: queue.Queue[tuple[Pixels, Future[Outputs]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"batch-{name}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, pixels: Pixels) -> Future[Outputs]:
        if self._queue.qsize() >= self._max_queue:
            raise Overloaded(f"model {self.name} has {self._queue.qsize()} images waiting; retry shortly")
        future: Future[Outputs] = Future()
        self._queue.put((pixels, future))
        return future

    def _gather(
        self, first: tuple[Pixels, Future[Outputs]]
    ) -> tuple[list[tuple[Pixels, Future[Outputs]]], bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self._max_wait
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            live = [(pixels, future) for pixels, future in batch if future.set_running_or_notify_cancel()]
            if live:
                started = time.perf_counter()
                try:
                    outputs = self._predict(np.stack([pixels for pixels, _ in live]))
                except BaseException as exc:  # handed to every waiting request, never lost
                    for _, future in live:
                        future.set_exception(exc)
                else:
                    for row, (_, future) in zip(outputs, live, strict=True):
                        future.set_result(row)
                if self.on_batch is not None:
                    self.on_batch(self.name, len(live), time.perf_counter() - started)
            if stop:
                return

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
