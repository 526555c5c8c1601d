"""Stage 0, what was asked. In: the caller's photos (bytes, fetched or uploaded), the models it
names or the groups it allows, where and when, how to steer. Out: a ``Request``, the one
question every way in asks (the classifier endpoints, /v1/identify, the CLI, a collection).

A classifier endpoint's request names one model and asks for the model's own probabilities
(``scores="model"``); /v1/identify asks every ready classifier (or those of ``groups``) for
calibrated ones. Nothing here reads a photo: requests are checked before any download.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from app.errors import BadRequest
from app.identification.species_lists import SpeciesList
from app.imaging.photo import Photo

MAX_PHOTOS = 5  # one observation: photos of one organism

GeoMode = Literal["off", "prior", "filter"]
# Where a place came from: the request (the API's lat/lon, the CLI's --lat/--lon), a collection's
# CSV row or Camtrap DP deployment, or the photo's own EXIF GPS.
PlaceSource = Literal["request", "row", "deployment", "photo"]
# ``calibrated``: temperature-scaled probabilities, comparable across models, and the scope
# signal decides whether a model knows what the photos show (/v1/identify). ``model``: the
# model's own output, and its background class decides (the classifier endpoints, unchanged).
ScoreKind = Literal["calibrated", "model"]


@dataclass(frozen=True, slots=True)
class Place:
    """Where (WGS84) and when an observation was made; the month picks GBIF's records.
    ``source``: where the coordinates came from; ``date_source``: where the date came from,
    when that is another source (a request's date with the photo's GPS)."""

    lat: float
    lon: float
    date: dt.date | None = None
    source: PlaceSource = "request"
    date_source: PlaceSource | None = None

    @property
    def month(self) -> int | None:
        return self.date.month if self.date is not None else None


@dataclass(frozen=True, slots=True)
class Defaults:
    """Where and when an observation was made when neither it nor its photos say (a collection's
    command-wide ``--lat/--lon/--date``): the place, or a date alone."""

    place: Place | None = None
    date: dt.date | None = None


@dataclass(frozen=True)
class Steering:
    """What a request narrows the answer to, what the place does, and its own thresholds.

    - ``taxon``: a GBIF key or a scientific name of any rank (``app.identification.plan``);
    - ``species_list``: scientific names, uploaded or installed (``species_lists``);
    - ``geo``: ``off`` ignores the place, ``prior`` (default) weighs the species by GBIF's records
      near it, ``filter`` keeps only the recorded ones (``app.identification.steer``);
    - ``min_score``, ``rollup_threshold``: per request, in place of the ranking settings.
    """

    taxon: str | None = None
    species_list: SpeciesList | None = None
    geo: GeoMode = "prior"
    min_score: float | None = None  # None: RANKING_MIN_SCORE
    rollup_threshold: float | None = None  # None: RANKING_ROLLUP_THRESHOLD

    def __post_init__(self) -> None:
        # The API bounds these already; the CLI and callers in code get the same refusal.
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise BadRequest(
                f"min_score {self.min_score} is not in [0, 1]", detail={"min_score": self.min_score}
            )
        if self.rollup_threshold is not None and not 0.0 < self.rollup_threshold <= 1.0:
            raise BadRequest(
                f"rollup_threshold {self.rollup_threshold} is not in (0, 1]",
                detail={"rollup_threshold": self.rollup_threshold},
            )

    @property
    def filtering(self) -> bool:
        return self.taxon is not None or self.species_list is not None


@dataclass(frozen=True)
class Request:
    """One observation: 1 to ``MAX_PHOTOS`` photos of one organism.

    ``model``: the one classifier to ask (a classifier endpoint); else every ready classifier,
    or those of ``groups``. ``with_index``: also ask the species index, when one is served."""

    photos: list[Photo]
    place: Place | None = None
    steering: Steering = field(default_factory=Steering)
    top_k: int | None = None  # None: RANKING_TOP_K_DEFAULT
    model: str | None = None
    groups: frozenset[str] | None = None
    scores: ScoreKind = "calibrated"
    with_index: bool = True
    # Without a place, the photos' own EXIF GPS and date (``app.identification.place``).
    use_photo_metadata: bool = True
    date: tuple[dt.date, PlaceSource] | None = None  # a date given without coordinates, and by whom
    defaults: Defaults | None = None  # after the photos' own: a collection's --lat/--lon/--date

    def __post_init__(self) -> None:
        if not 1 <= len(self.photos) <= MAX_PHOTOS:
            raise BadRequest(
                f"send 1 to {MAX_PHOTOS} photos of one organism; got {len(self.photos)}",
                detail={"photos": len(self.photos), "max": MAX_PHOTOS},
            )
