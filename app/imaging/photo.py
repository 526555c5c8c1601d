"""One photo's bytes as they arrived, before anything is decoded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PhotoSource = Literal["url", "upload", "file"]


@dataclass(frozen=True, slots=True)
class Photo:
    data: bytes
    source: PhotoSource
    fetch_ms: float | None = None  # downloading it (url only)
    name: str | None = None  # the file name or address, for messages about this photo
