"""A token bucket per caller: how often each API key (or client address) may call."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

_MAX_TRACKED = 10_000  # buckets kept; the least recently seen are forgotten first


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # until the bucket is full again
    retry_after_s: int  # until one request is allowed


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.limit = burst or per_minute
        self.rate = per_minute / 60.0
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.pop(key, None) or _Bucket(float(self.limit), now)
            bucket.tokens = min(self.limit, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            allowed = bucket.tokens >= 1.0
            if allowed:
                bucket.tokens -= 1.0
            self._buckets[key] = bucket
            while len(self._buckets) > _MAX_TRACKED:
                self._buckets.popitem(last=False)
            missing = self.limit - bucket.tokens
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=int(bucket.tokens),
            reset_s=math.ceil(missing / self.rate),
            retry_after_s=0 if allowed else max(1, math.ceil((1.0 - bucket.tokens) / self.rate)),
        )
