"""What a collection is made of, whatever its source: observations (1-5 photos each, with the
place and date the source gives) and, once answered, their outcomes."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from app.identification.request import Place

SourceKind = Literal["folder", "csv", "camtrap-dp"]


@dataclass(frozen=True, slots=True)
class PhotoRef:
    """One photo of an observation, as the source names it.

    ``location`` is an absolute path on this machine or an http(s) address (fetched under the
    API's SSRF rules); ``given`` is how the source wrote it (a path relative to the source, the
    CSV's cell, the media's ``filePath``), which is what the outputs repeat."""

    location: str
    given: str
    media_id: str | None = None  # Camtrap DP mediaID
    timestamp: str | None = None  # Camtrap DP media timestamp (ISO 8601, as written)

    @property
    def is_url(self) -> bool:
        return self.location.lower().startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Observation:
    """1-5 photos of one organism, in the order the source lists them.

    ``place``: where and when, as the source gives them (its ``source`` says which: ``row`` for
    a CSV, ``deployment`` for Camtrap DP); ``date`` alone: a date without coordinates (the
    photos' GPS may give those). ``taxon``: the CSV's per-row taxon filter."""

    id: str
    photos: tuple[PhotoRef, ...]
    place: Place | None = None
    date: str | None = None  # ISO date, when the source gives a date but no place
    taxon: str | None = None
    deployment_id: str | None = None  # Camtrap DP
    event_id: str | None = None  # Camtrap DP, --group-by event
    event_start: str | None = None  # ISO 8601: the first and last media timestamps
    event_end: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """An observation, answered or failed, as the journal keeps it.

    ``answer``: the /v1/identify answer as JSON (``IdentifyResponse`` by alias, with ``place``),
    None when it failed; ``error``: why it failed (a photo unreadable, 404, too big);
    ``answered_at``: ISO 8601 UTC, when the answer was made."""

    observation: Observation
    answer: dict[str, Any] | None
    error: str | None
    answered_at: str


def observation_to_json(observation: Observation) -> str:
    """For a Ray worker: an observation as plain JSON (no pickled objects cross processes)."""
    fields = asdict(observation)
    if observation.place is not None:
        fields["place"]["date"] = observation.place.date.isoformat() if observation.place.date else None
    return json.dumps(fields, ensure_ascii=False)


def observation_from_json(text: str) -> Observation:
    fields = json.loads(text)
    place = fields.pop("place")
    if place is not None:
        date = place.pop("date")
        place = Place(**place, date=dt.date.fromisoformat(date) if date else None)
    photos = tuple(PhotoRef(**photo) for photo in fields.pop("photos"))
    return Observation(**fields, photos=photos, place=place)
