"""Stage 3a, where and when (``app.identification.place.locate``): the coordinates from the
request, else the photos' EXIF, else a collection's defaults; the date resolved on its own in the
same order (a date given alone after the given place's own); broken metadata said, and
``use_photo_metadata=False`` reading nothing of the photos."""

from __future__ import annotations

import datetime as dt

import pytest

from app.identification.place import locate
from app.identification.request import Defaults, Place
from app.imaging.photo_metadata import PhotoMetadata

GPS = PhotoMetadata(43.4674, 11.8851, dt.datetime(2008, 10, 22, 16, 28), ())
DATED = PhotoMetadata(None, None, dt.datetime(2014, 9, 21, 16, 0), ())
BROKEN = PhotoMetadata(None, None, None, ("GPS ignored: latitude has a zero denominator",))
NOTHING = PhotoMetadata()
ROW = Place(51.5, -0.12, dt.date(2024, 5, 1), source="row")
ROW_UNDATED = Place(51.5, -0.12, source="row")
DEFAULTS = Defaults(Place(53.8, -1.56, dt.date(2026, 7, 14)), dt.date(2026, 7, 14))
D = dt.date
TUSCANY = (43.4674, 11.8851)
LEEDS = (53.8, -1.56)
JUNE = (D(2020, 6, 1), "request")
UNDATED_GPS = PhotoMetadata(*TUSCANY)
JANUARY = Defaults(None, D(2026, 1, 2))
APRIL = (D(2021, 4, 11), "deployment")


@pytest.mark.parametrize(
    ("given", "given_date", "photos", "defaults", "want"),
    [
        # the given place wins, date and all
        (ROW, None, [GPS], None, (51.5, -0.12, D(2024, 5, 1), "row", None)),
        # a given place without a date takes the photo's
        (ROW_UNDATED, None, [GPS], None, (51.5, -0.12, D(2008, 10, 22), "row", "photo")),
        # no place given: the photo's GPS and date
        (None, None, [GPS], None, (43.4674, 11.8851, D(2008, 10, 22), "photo", None)),
        # a date given alone beats the photo's
        (None, JUNE, [GPS], None, (*TUSCANY, D(2020, 6, 1), "photo", "request")),
        # the first photo with GPS gives the place, the first with a date the date
        (None, None, [DATED, GPS], None, (43.4674, 11.8851, D(2014, 9, 21), "photo", None)),
        # the defaults only where neither the source nor the photos say
        (None, None, [NOTHING], DEFAULTS, (53.8, -1.56, D(2026, 7, 14), "request", None)),
        (None, None, [GPS], DEFAULTS, (43.4674, 11.8851, D(2008, 10, 22), "photo", None)),
        (None, None, [DATED], DEFAULTS, (53.8, -1.56, D(2014, 9, 21), "request", "photo")),
        # a default date alone fills the photo's place's missing date
        (None, None, [UNDATED_GPS], JANUARY, (*TUSCANY, D(2026, 1, 2), "photo", "request")),
        # a row's date alone with the default place
        (None, APRIL, [NOTHING], DEFAULTS, (*LEEDS, D(2021, 4, 11), "request", "deployment")),
    ],
    ids=[
        "given", "given-undated", "photo", "date-alone", "first-of-each", "defaults", "photo-before-defaults",
        "default-place-photo-date", "default-date", "row-date-default-place",
    ],
)  # fmt: skip
def test_where_and_when_come_in_order(given, given_date, photos, defaults, want):
    place = locate(given, given_date, photos, use_photos=True, defaults=defaults).place
    assert place is not None
    assert (place.lat, place.lon, place.date, place.source, place.date_source) == want


def test_no_place_anywhere_is_none_and_never_invented():
    where = locate(None, (D(2020, 6, 1), "request"), [DATED, NOTHING], use_photos=True)
    assert where.place is None and where.problems == ()


def test_broken_metadata_is_said_numbered_by_photo_and_ignored():
    where = locate(None, None, [BROKEN, GPS], use_photos=True)
    assert where.place is not None and where.place.source == "photo"
    assert where.problems == ("photo 1: GPS ignored: latitude has a zero denominator",)
    alone = locate(None, None, [BROKEN], use_photos=True)
    assert alone.place is None and alone.problems == ("GPS ignored: latitude has a zero denominator",)


def test_without_photo_metadata_the_photos_are_not_read():
    assert locate(None, None, [GPS], use_photos=False).place is None
    off = locate(ROW_UNDATED, None, [GPS, BROKEN], use_photos=False)
    assert off.place == ROW_UNDATED and off.problems == ()
    dated = locate(None, (D(2021, 4, 11), "row"), [GPS], use_photos=False, defaults=DEFAULTS).place
    assert dated is not None and (dated.source, dated.date, dated.date_source) == (
        "request",
        D(2021, 4, 11),
        "row",
    )
