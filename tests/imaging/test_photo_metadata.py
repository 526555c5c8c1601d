from __future__ import annotations

import datetime as dt
import re
import struct
import time
from collections.abc import Mapping

import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational as R

from app.errors import PayloadTooLarge, UndecodableImage, UnsupportedMediaType
from app.imaging.decode import decode, decode_for
from app.imaging.photo_metadata import UNREADABLE, PhotoMetadata, read_metadata, read_photo_metadata
from app.models.manifest import InputSpec
from tests.support.images import encode, photo
from tests.support.shared import SHARED

GPS, EXIF = 0x8825, 0x8769
LAT_REF, LAT, LON_REF, LON = 1, 2, 3, 4
DATE_TIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 36867, 36881

SAMPLES = SHARED / "datasets/exif-samples"
samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"{SAMPLES} not found: the real EXIF sample photos are not there"
)

# A coordinate written out: what must never reach a problem (problems are logged).
DECIMAL = re.compile(r"\d+\.\d+")


def dms(degrees: int, minutes: int, seconds: float) -> tuple[R, R, R]:
    return R(degrees, 1), R(minutes, 1), R(round(seconds * 1000), 1000)


def exif_with(
    gps: Mapping[int, object] | None = None,
    taken: object = None,
    exif_ifd: Mapping[int, object] | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    if gps is not None:
        exif.get_ifd(GPS).update(gps)
    if taken is not None:
        exif.get_ifd(EXIF)[DATE_TIME_ORIGINAL] = taken
    exif.get_ifd(EXIF).update(exif_ifd or {})
    return exif


def jpeg_with(
    gps: Mapping[int, object] | None = None, taken: object = None, image: Image.Image | None = None
) -> bytes:
    """A real JPEG whose EXIF went through Pillow's writer and reader, as a camera file does."""
    exif = exif_with(gps, taken)
    return encode(image or Image.new("RGB", (16, 16)), "JPEG", exif=exif.tobytes())


def assert_no_coordinates(meta: PhotoMetadata) -> None:
    for problem in meta.problems:
        assert not DECIMAL.search(problem), problem


# -- crafted GPS -----------------------------------------------------------------------------------


def test_north_east_round_trips_through_a_jpeg():
    meta = read_photo_metadata(
        jpeg_with({LAT_REF: "N", LAT: dms(43, 28, 2.814), LON_REF: "E", LON: dms(11, 53, 6.456)})
    )
    assert meta.lat == pytest.approx(43 + 28 / 60 + 2.814 / 3600, abs=1e-9)
    assert meta.lon == pytest.approx(11 + 53 / 60 + 6.456 / 3600, abs=1e-9)
    assert meta.located and meta.problems == ()


def test_southern_and_western_refs_give_negative_values():
    meta = read_photo_metadata(
        jpeg_with({LAT_REF: "S", LAT: dms(22, 54, 30), LON_REF: "W", LON: dms(43, 12, 0)})
    )
    assert meta.lat == pytest.approx(-(22 + 54 / 60 + 30 / 3600))
    assert meta.lon == pytest.approx(-(43 + 12 / 60))
    assert meta.problems == ()


@pytest.mark.parametrize(
    ("lat", "lon", "want"),
    [
        # decimal minutes with 0 seconds, as some phones write
        ((R(43, 1), R(47135666, 1000000), R(0, 1)), (R(11, 1), R(14077166, 1000000), R(0, 1)), None),
        ((43.5, 30.0, 0.0), (11.25, 0.0, 0.0), (44.0, 11.25)),  # plain floats
        (43.75, R(45, 4), (43.75, 11.25)),  # one number each: decimal degrees
        ((43, 30), (11, 15, 36), (43.5, 11.26)),  # ints, and only degrees and minutes
    ],
)
def test_other_value_forms_are_read(lat, lon, want):
    meta = read_metadata(exif_with({LAT_REF: "N", LAT: lat, LON_REF: "e", LON: lon}))
    if want is None:
        want = (43 + 47.135666 / 60, 11 + 14.077166 / 60)
    assert (meta.lat, meta.lon) == pytest.approx(want, abs=1e-9)
    assert meta.problems == ()


def test_refs_as_bytes_or_padded_are_read():
    meta = read_metadata(
        exif_with({LAT_REF: b"S\x00", LAT: dms(10, 0, 0), LON_REF: " W ", LON: dms(20, 0, 0)})
    )
    assert (meta.lat, meta.lon) == (-10.0, -20.0)


GOOD_LAT, GOOD_LON = dms(43, 28, 2.5), dms(11, 53, 6.5)


@pytest.mark.parametrize(
    ("gps", "problems"),
    [
        (
            {LAT_REF: "N", LAT: (R(43, 0), R(28, 1), R(2, 1)), LON_REF: "E", LON: GOOD_LON},
            ["GPS ignored: latitude has a zero denominator"],
        ),
        (
            {LAT_REF: "N", LAT: (R(0, 0), R(0, 0), R(0, 0)), LON_REF: "E", LON: (R(0, 0), R(0, 0), R(0, 0))},
            [
                "GPS ignored: latitude has a zero denominator",
                "GPS ignored: longitude has a zero denominator",
            ],
        ),
        (
            {LAT_REF: "N", LAT: dms(95, 0, 0), LON_REF: "E", LON: GOOD_LON},
            ["GPS ignored: latitude is beyond 90 degrees"],
        ),
        (
            {LAT_REF: "N", LAT: dms(90, 0, 1), LON_REF: "E", LON: GOOD_LON},
            ["GPS ignored: latitude is beyond 90 degrees"],
        ),
        (
            {LAT_REF: "N", LAT: GOOD_LAT, LON_REF: "W", LON: dms(181, 0, 0)},
            ["GPS ignored: longitude is beyond 180 degrees"],
        ),
        (
            {LAT_REF: "N", LAT: dms(43, 60, 0), LON_REF: "E", LON: GOOD_LON},
            ["GPS ignored: latitude has minutes or seconds of 60 or more"],
        ),
        (
            {LAT_REF: "N", LAT: GOOD_LAT, LON_REF: "E", LON: dms(11, 53, 60)},
            ["GPS ignored: longitude has minutes or seconds of 60 or more"],
        ),
        (
            {LAT: GOOD_LAT, LON_REF: "E", LON: GOOD_LON},
            ["GPS ignored: latitude reference (N or S) is missing"],
        ),
        (
            {LAT: GOOD_LAT, LON: GOOD_LON},
            [
                "GPS ignored: latitude reference (N or S) is missing",
                "GPS ignored: longitude reference (E or W) is missing",
            ],
        ),
        (
            {LAT_REF: "N", LAT: GOOD_LAT, LON_REF: "", LON: GOOD_LON},
            ["GPS ignored: longitude reference (E or W) is missing"],
        ),
        (
            {LAT_REF: "E", LAT: GOOD_LAT, LON_REF: "E", LON: GOOD_LON},
            ["GPS ignored: latitude reference is not N or S"],
        ),
        (
            {LAT_REF: "N", LAT: GOOD_LAT},
            ["GPS ignored: longitude is missing"],
        ),
        (
            {LAT_REF: "N", LAT: dms(0, 0, 0), LON_REF: "E", LON: dms(0, 0, 0)},
            ["GPS ignored: latitude and longitude are both exactly zero, a device's 'no fix'"],
        ),
    ],
)
def test_broken_gps_in_a_jpeg_is_ignored_with_a_problem(gps, problems):
    meta = read_photo_metadata(jpeg_with(gps, taken="2020:05:06 07:08:09"))
    assert (meta.lat, meta.lon) == (None, None) and not meta.located
    assert list(meta.problems) == problems
    assert meta.taken == dt.datetime(2020, 5, 6, 7, 8, 9)  # a broken position costs not the date
    assert_no_coordinates(meta)


@pytest.mark.parametrize(
    ("lat", "problem"),
    [
        ("43.4674", "latitude is not a number"),
        (b"\x01\x02", "latitude is not a number"),
        ({"degrees": 43}, "latitude is not a number"),
        ((R(43, 1), "28", R(2, 1)), "latitude is not a number"),
        (True, "latitude is not a number"),
        (None, "latitude is not a number"),
        ((), "latitude is empty"),
        ((R(43, 1), R(28, 1), R(2, 1), R(0, 1)), "latitude has more than degrees, minutes and seconds"),
        ((float("nan"), 0.0, 0.0), "latitude is not a finite number"),
        (float("inf"), "latitude is not a finite number"),
        ((-43.0, 28.0, 2.0), "latitude has a negative part"),
        ((R(10**400, 1), R(0, 1), R(0, 1)), "latitude could not be read"),  # too big for a float
    ],
)
def test_wrong_types_are_ignored_with_a_problem(lat, problem):
    meta = read_metadata(exif_with({LAT_REF: "N", LAT: lat, LON_REF: "E", LON: GOOD_LON}))
    assert (meta.lat, meta.lon) == (None, None)
    assert meta.problems == (f"GPS ignored: {problem}",)


@pytest.mark.parametrize("ref", [5, None, ("N",), b""])
def test_a_ref_that_is_no_letter_counts_as_missing(ref):
    meta = read_metadata(exif_with({LAT_REF: ref, LAT: GOOD_LAT, LON_REF: "E", LON: GOOD_LON}))
    assert meta.lat is None
    assert meta.problems == ("GPS ignored: latitude reference (N or S) is missing",)


@pytest.mark.parametrize(
    "gps",
    [
        {},  # what Pillow gives for no GPS block, and for an empty one
        {0: b"\x02\x02\x00\x00"},  # GPSVersionID only
        {LAT_REF: "N", LON_REF: "E"},  # refs with no values: nothing was measured
    ],
)
def test_a_gps_block_without_a_position_is_no_gps_and_no_problem(gps):
    meta = read_photo_metadata(jpeg_with(gps))
    assert meta == PhotoMetadata()


def test_coordinates_never_reach_the_problems():
    cases: list[dict[int, object]] = [
        {LAT_REF: "N", LAT: dms(95, 12, 34.5678), LON_REF: "E", LON: dms(11, 53, 6.456)},
        {LAT: dms(43, 28, 2.814), LON: dms(11, 53, 6.456)},
        {LAT_REF: "N", LAT: (43.4674, 61.5, 0.0), LON_REF: "X", LON: 11.8851},
    ]
    for gps in cases:
        meta = read_metadata(exif_with(gps))
        assert meta.problems and meta.lat is None
        assert_no_coordinates(meta)
        assert not any(re.search(r"43|11|95", problem) for problem in meta.problems)


class _Unreadable(Image.Exif):
    def get_ifd(self, tag):
        raise struct.error("unpack requires a buffer of 12 bytes")


def test_a_block_that_cannot_be_read_is_ignored_with_a_problem():
    meta = read_metadata(_Unreadable())
    assert meta == PhotoMetadata(
        problems=(
            "GPS ignored: the GPS block could not be read",
            "date taken ignored: the EXIF block could not be read",
        )
    )


class _Strange(Image.Exif):
    def get_ifd(self, tag):
        return 42  # not even a dict


def test_anything_unforeseen_still_does_not_raise():
    assert read_metadata(_Strange()) == PhotoMetadata(problems=(UNREADABLE,))


# -- crafted dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        ("2020:05:06 07:08:09", dt.datetime(2020, 5, 6, 7, 8, 9)),
        ("2020:05:06 07:08:09\x00", dt.datetime(2020, 5, 6, 7, 8, 9)),
        ("2020-05-06T07:08:09", dt.datetime(2020, 5, 6, 7, 8, 9)),
        ("2020:05:06 07:08:09.123+02:00", dt.datetime(2020, 5, 6, 7, 8, 9)),
        (b"2020:05:06 07:08:09", dt.datetime(2020, 5, 6, 7, 8, 9)),
    ],
)
def test_dates_are_read_naive(value, taken):
    meta = read_metadata(exif_with(taken=value))
    assert meta.taken == taken and meta.taken.tzinfo is None
    assert meta.problems == ()


def test_offset_time_original_keeps_the_date_naive():
    exif = exif_with(taken="2022:08:14 14:12:31", exif_ifd={OFFSET_TIME_ORIGINAL: "+03:00"})
    meta = read_photo_metadata(encode(Image.new("RGB", (16, 16)), "JPEG", exif=exif.tobytes()))
    assert meta.taken == dt.datetime(2022, 8, 14, 14, 12, 31) and meta.taken.tzinfo is None
    assert meta.problems == ()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0000:00:00 00:00:00", "date taken ignored: it is not a valid date"),
        ("    :  :     ", "date taken ignored: it is not a valid date"),
        ("    :  :       :  :  ", "date taken ignored: it is not a valid date"),
        ("2020:13:01 00:00:00", "date taken ignored: it is not a valid date"),
        ("2020:02:30 00:00:00", "date taken ignored: it is not a valid date"),
        ("2020:05:06 24:00:00", "date taken ignored: it is not a valid date"),
        ("yesterday", "date taken ignored: it is not a valid date"),
        ("0001:01:01 00:00:00", "date taken ignored: the year is before photography"),
    ],
)
def test_invalid_dates_in_a_jpeg_are_ignored_with_a_problem(value, problem):
    meta = read_photo_metadata(jpeg_with(taken=value))
    assert meta.taken is None
    assert meta.problems == (problem,)


@pytest.mark.parametrize(
    ("value", "problems"), [("", ()), ("\x00", ()), (20200506, ("date taken ignored: it is not text",))]
)
def test_blank_dates_are_no_date_and_other_types_a_problem(value, problems):
    meta = read_metadata(exif_with(taken=value))
    assert meta.taken is None and meta.problems == problems


def test_only_date_time_original_is_used():
    exif = Image.Exif()
    exif[306] = "2020:05:06 07:08:09"  # DateTime: when the file was last changed, not taken
    assert read_metadata(exif) == PhotoMetadata()


# -- whole files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image", b"\xff\xd8\xff", b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00\x00\x08"],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_unreadable_bytes_give_a_problem_not_an_error(data):
    assert read_photo_metadata(data) == PhotoMetadata(problems=(UNREADABLE,))


def test_exif_in_a_png_and_a_webp_is_read():
    exif = exif_with(
        {LAT_REF: "S", LAT: dms(10, 30, 0), LON_REF: "E", LON: dms(20, 15, 0)}, "2021:01:02 03:04:05"
    )
    for fmt in ("PNG", "WEBP"):
        meta = read_photo_metadata(encode(Image.new("RGB", (16, 16)), fmt, exif=exif.tobytes()))
        assert (meta.lat, meta.lon, meta.taken) == (-10.5, 20.25, dt.datetime(2021, 1, 2, 3, 4, 5)), fmt


def test_a_photo_without_exif_has_no_metadata_and_no_problem():
    for fmt in ("JPEG", "PNG", "GIF", "BMP"):
        assert read_photo_metadata(encode(Image.new("RGB", (16, 16)), fmt)) == PhotoMetadata(), fmt


# -- decode ----------------------------------------------------------------------------------------

U8 = InputSpec()


def test_decode_carries_the_metadata_and_keeps_the_pixels():
    image = photo(320, 240)
    gps = {LAT_REF: "S", LAT: dms(33, 51, 35.41), LON_REF: "E", LON: dms(151, 12, 40)}
    located = decode_for(
        jpeg_with(gps, "2019:12:31 23:59:59", image), [U8, InputSpec(size=(96, 96))], max_pixels=10**8
    )
    plain = decode(encode(image, "JPEG"), U8, max_pixels=10**8)
    for out in located:
        assert out.metadata is not None and out.metadata.located
        assert out.metadata.lat == pytest.approx(-(33 + 51 / 60 + 35.41 / 3600))
        assert out.metadata.taken == dt.datetime(2019, 12, 31, 23, 59, 59)
    np.testing.assert_array_equal(located[0].pixels, plain.pixels)
    assert plain.metadata == PhotoMetadata()


def test_decode_survives_broken_gps_and_says_so():
    image = photo(320, 240)
    broken = {LAT_REF: "N", LAT: (R(0, 0), R(0, 0), R(0, 0)), LON_REF: "E", LON: dms(11, 53, 6)}
    out = decode(jpeg_with(broken, "0000:00:00 00:00:00", image), U8, max_pixels=10**8)
    assert out.metadata == PhotoMetadata(
        problems=(
            "GPS ignored: latitude has a zero denominator",
            "date taken ignored: it is not a valid date",
        )
    )
    np.testing.assert_array_equal(out.pixels, decode(encode(image, "JPEG"), U8, max_pixels=10**8).pixels)


# -- the real sample files -------------------------------------------------------------------------


GPS_SAMPLES = [f"DSCN00{n}.jpg" for n in (10, 12, 21, 25, 27, 29, 38, 40, 42)]


@pytest.mark.shared
@samples
def test_the_gps_folder_holds_the_nine_nikon_photos():
    assert sorted(path.name for path in (SAMPLES / "gps").glob("DSCN00*.jpg")) == GPS_SAMPLES


@pytest.mark.shared
@samples
@pytest.mark.parametrize("name", GPS_SAMPLES)
def test_the_nikon_gps_samples_are_in_tuscany(name):
    meta = read_photo_metadata((SAMPLES / "gps" / name).read_bytes())
    assert meta.lat is not None and 43.46 <= meta.lat <= 43.47
    assert meta.lon is not None and 11.87 <= meta.lon <= 11.886
    assert meta.taken is not None and meta.taken.date() == dt.date(2008, 10, 22)
    assert meta.problems == ()


@pytest.mark.shared
@samples
def test_the_nokia_phone_photo():
    meta = read_photo_metadata((SAMPLES / "mobile/HMD_Nokia_8.3_5G.jpg").read_bytes())
    # SOURCE.md rounds to whole seconds; the file holds 48.14" and 24.38".
    assert meta.lat == pytest.approx(60 + 8 / 60 + 48.14 / 3600, abs=1e-4)
    assert meta.lon == pytest.approx(24 + 54 / 60 + 24.38 / 3600, abs=1e-4)
    assert meta.lat == pytest.approx(60 + 8 / 60 + 48 / 3600, abs=1e-4)
    assert meta.lon == pytest.approx(24 + 54 / 60 + 24 / 3600, abs=2e-4)
    # It also writes OffsetTimeOriginal +03:00: the date stays the camera's naive clock.
    assert meta.taken is not None and meta.taken.tzinfo is None
    assert meta.taken.date() == dt.date(2022, 8, 14)
    assert meta.problems == ()


@pytest.mark.shared
@samples
def test_the_jolla_phone_photo_has_a_date_but_no_gps():
    meta = read_photo_metadata((SAMPLES / "mobile/jolla.jpg").read_bytes())
    assert meta.taken is not None and not meta.located and meta.problems == ()


@pytest.mark.shared
@samples
def test_the_camera_trap_frame_has_no_gps():
    meta = read_photo_metadata((SAMPLES / "Reconyx_HC500_Hyperfire.jpg").read_bytes())
    assert not meta.located and meta.problems == ()


@pytest.mark.shared
@samples
def test_decimal_minutes_in_a_real_file():
    meta = read_photo_metadata((SAMPLES / "tests/87_OSError.jpg").read_bytes())
    assert meta.lat == pytest.approx(43 + 47.135666 / 60, abs=1e-6)
    assert meta.lon == pytest.approx(11 + 14.077166 / 60, abs=1e-6)


@pytest.mark.shared
@samples
def test_every_sample_file_is_read_quickly_and_never_raises():
    files = sorted(path for path in SAMPLES.rglob("*") if path.is_file())
    assert any(path.parent.name == "tests" for path in files)
    assert any(path.parent.name == "invalid" for path in files)
    for path in files:
        data = path.read_bytes()
        start = time.perf_counter()
        meta = read_photo_metadata(data)
        # Generous: a read takes milliseconds; this only catches a hang.
        assert time.perf_counter() - start < 5, path
        assert isinstance(meta, PhotoMetadata), path
        assert_no_coordinates(meta)


@pytest.mark.shared
@samples
def test_decode_on_the_samples_fails_only_with_the_services_errors():
    for path in sorted(SAMPLES.rglob("*")):
        if not path.is_file():
            continue
        try:
            out = decode(path.read_bytes(), U8, max_pixels=10**8)
        except (UnsupportedMediaType, UndecodableImage, PayloadTooLarge):
            continue
        assert out.metadata is not None, path
        assert_no_coordinates(out.metadata)


@pytest.mark.shared
@samples
def test_decode_on_a_gps_sample_is_located():
    out = decode((SAMPLES / "gps/DSCN0010.jpg").read_bytes(), U8, max_pixels=10**8)
    assert out.metadata is not None and out.metadata.located
    assert out.metadata.lat is not None and 43.46 <= out.metadata.lat <= 43.47
    assert out.metadata.taken is not None and out.metadata.taken.date() == dt.date(2008, 10, 22)
