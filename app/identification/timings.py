"""How long each stage took, and where those figures go (the server's Prometheus metrics;
nothing in the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Timings:
    decode_ms: float
    infer_ms: float
    total_ms: float
    fetch_ms: float | None = None
    search_ms: float | None = None


class InferenceObserver(Protocol):
    def observe_photo(self, decode_ms: float, infer_ms: dict[str, float]) -> None:
        """One photo decoded once and read by ``infer_ms``'s models."""

    def observe_fetch(self, fetch_ms: float, size: int) -> None: ...
