"""Where and when a photo says it was taken: its EXIF GPS and DateTimeOriginal.

Read from the image Pillow already opened for decoding (no second parse). Broken metadata is
common (wrong types, an empty GPS block, zero denominators, out-of-range values): it is never an
error, only ignored, with what was wrong in ``problems`` for the answer to say."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PhotoMetadata:
    lat: float | None = None  # WGS84 decimal degrees, south and west negative
    lon: float | None = None
    taken: dt.datetime | None = None  # DateTimeOriginal, naive (the camera's clock)
    problems: tuple[str, ...] = ()  # what was ignored, in words (never coordinates)

    @property
    def located(self) -> bool:
        return self.lat is not None and self.lon is not None
