"""Stage 3a, where and when. In: the place and date the request gives, and what each photo's own
EXIF says (``PhotoMetadata``, read while decoding). Out: the place the answer uses, where its
coordinates and its date came from, and what of the photos' metadata was ignored.

The request's place wins. Without one, the first photo (in the order given) whose GPS can be
read gives the coordinates, and then a collection's command-wide default (``fallback``). The
first photo with a DateTimeOriginal gives the date wherever none was given (``date_source``
then says so). Broken metadata is ignored and said, never an error. Nothing here logs:
coordinates never go to logs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from app.identification.request import Place, PlaceSource
from app.imaging.photo_metadata import PhotoMetadata


@dataclass(frozen=True, slots=True)
class Whereabouts:
    """The place an answer used (None: none known) and what the photos' metadata did not give."""

    place: Place | None
    problems: tuple[str, ...] = ()

    @classmethod
    def nowhere(cls) -> Whereabouts:
        return cls(None)


def locate(
    given: Place | None,
    given_date: tuple[dt.date, PlaceSource] | None,
    photos: Sequence[PhotoMetadata | None],
    *,
    use_photos: bool,
    fallback: Place | None = None,
) -> Whereabouts:
    """``given``: the request's (or row's, or deployment's) place; ``given_date``: a date given
    without coordinates, and by whom; ``photos``: each photo's metadata, in order; ``fallback``:
    the place when neither gives one (a collection's command-wide --lat/--lon)."""
    if not use_photos:
        return Whereabouts(given or fallback)
    numbered = len(photos) > 1
    problems = tuple(
        f"photo {n}: {problem}" if numbered else problem
        for n, meta in enumerate(photos, 1)
        if meta is not None
        for problem in meta.problems
    )
    taken = next((m.taken.date() for m in photos if m is not None and m.taken is not None), None)
    located = next((m for m in photos if m is not None and m.located), None)
    place = given
    if place is None and located is not None and located.lat is not None and located.lon is not None:
        place = Place(located.lat, located.lon, source="photo")
    place = place or fallback
    if place is None:
        return Whereabouts(None, problems)
    if given is None and given_date is not None:  # a date given alone beats the photo's and the default's
        date, source = given_date
        place = replace(place, date=date, date_source=None if source == place.source else source)
    elif place.date is None and taken is not None:
        place = replace(place, date=taken, date_source=None if place.source == "photo" else "photo")
    return Whereabouts(place, problems)
