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
from dataclasses import dataclass

from app.identification.request import Defaults, Place, PlaceSource
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
    defaults: Defaults | None = None,
) -> Whereabouts:
    """``given``: the request's (or row's, or deployment's) place; ``given_date``: a date given
    without coordinates, and by whom; ``photos``: each photo's metadata, in order; ``defaults``:
    a collection's command-wide --lat/--lon/--date, which count after the photos'."""
    problems: tuple[str, ...] = ()
    located = taken = None
    if use_photos:
        numbered = len(photos) > 1
        problems = tuple(
            f"photo {n}: {problem}" if numbered else problem
            for n, meta in enumerate(photos, 1)
            if meta is not None
            for problem in meta.problems
        )
        located = next((m for m in photos if m is not None and m.located), None)
        taken = next((m.taken.date() for m in photos if m is not None and m.taken is not None), None)
    default = defaults.place if defaults is not None else None
    source: PlaceSource
    if given is not None:
        lat, lon, source = given.lat, given.lon, given.source
    elif located is not None and located.lat is not None and located.lon is not None:
        lat, lon, source = located.lat, located.lon, "photo"
    elif default is not None:
        lat, lon, source = default.lat, default.lon, "request"
    else:
        return Whereabouts(None, problems)
    # The date, in the same order as the coordinates: a date given alone counts after the given
    # place's own and before the photos'.
    dates: list[tuple[dt.date | None, PlaceSource]] = [
        (given.date if given is not None else None, given.source if given is not None else "request"),
        given_date or (None, "request"),
        (taken, "photo"),
        (default.date if default is not None else None, "request"),
        (defaults.date if defaults is not None else None, "request"),
    ]
    date, date_source = next(((d, s) for d, s in dates if d is not None), (None, source))
    return Whereabouts(
        Place(lat, lon, date, source=source, date_source=None if date_source == source else date_source),
        problems,
    )
