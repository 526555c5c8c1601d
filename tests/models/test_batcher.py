"""The micro-batcher on its own: batches form, failures reach every waiter, cancelled requests
are skipped, and a full queue refuses at once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from app.errors import Overloaded
from app.models.batcher import MicroBatcher


def test_waiting_requests_are_gathered_into_one_call():
    calls: list[int] = []
    release = threading.Event()

    def predict(batch):
        calls.append(len(batch))
        release.wait(5)
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True).astype(np.float32)

    batcher = MicroBatcher("m", predict, max_batch=8, max_wait_ms=0, max_queue=100)
    first = batcher.submit(np.full((2, 2, 3), 1, np.uint8))
    time.sleep(0.05)  # the first call is running; the next five queue up behind it
    rest = [batcher.submit(np.full((2, 2, 3), k, np.uint8)) for k in range(2, 7)]
    release.set()
    assert first.result(5)[0] == 12
    assert [f.result(5)[0] for f in rest] == [12 * k for k in range(2, 7)]
    assert calls == [1, 5]
    batcher.close()


def test_a_failing_call_fails_every_request_in_it_and_the_batcher_goes_on():
    def predict(batch):
        if (batch == 0).any():
            raise RuntimeError("bad batch")
        return np.ones((len(batch), 1), np.float32)

    batcher = MicroBatcher("m", predict, max_batch=4, max_wait_ms=50, max_queue=100)
    bad = [batcher.submit(np.zeros((1, 1, 3), np.uint8)), batcher.submit(np.ones((1, 1, 3), np.uint8))]
    for future in bad:
        with pytest.raises(RuntimeError, match="bad batch"):
            future.result(5)
    assert batcher.submit(np.ones((1, 1, 3), np.uint8)).result(5)[0] == 1.0
    batcher.close()


def test_cancelled_requests_are_skipped_and_a_full_queue_refuses():
    gate = threading.Event()
    seen: list[int] = []

    def predict(batch):
        gate.wait(5)
        seen.append(len(batch))
        return np.zeros((len(batch), 1), np.float32)

    batcher = MicroBatcher("m", predict, max_batch=16, max_wait_ms=0, max_queue=3)
    running = batcher.submit(np.zeros((1, 1, 3), np.uint8))
    time.sleep(0.05)
    queued = [batcher.submit(np.zeros((1, 1, 3), np.uint8)) for _ in range(3)]
    with pytest.raises(Overloaded):
        batcher.submit(np.zeros((1, 1, 3), np.uint8))
    queued[0].cancel()
    gate.set()
    running.result(5)
    for future in queued[1:]:
        future.result(5)
    assert seen == [1, 2]
    batcher.close()
