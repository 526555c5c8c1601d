"""Where and when a photo says it was taken: its EXIF GPS and DateTimeOriginal.

Read from the image Pillow already opened for decoding (no second parse). Broken metadata is
common (wrong types, an empty GPS block, zero denominators, out-of-range values): it is never an
error, only ignored, with what was wrong in ``problems`` for the answer to say."""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from PIL import Image
from PIL.TiffImagePlugin import IFDRational


@dataclass(frozen=True, slots=True)
class PhotoMetadata:
    lat: float | None = None  # WGS84 decimal degrees, south and west negative
    lon: float | None = None
    taken: dt.datetime | None = None  # DateTimeOriginal, naive (the camera's clock)
    problems: tuple[str, ...] = ()  # what was ignored, in words (never coordinates)

    @property
    def located(self) -> bool:
        return self.lat is not None and self.lon is not None


UNREADABLE = "the photo's metadata could not be read"

# The formats decode.ALLOWED_FORMATS accepts; not imported, as decode imports this module.
_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")

_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769
_LAT_REF, _LAT, _LON_REF, _LON = 1, 2, 3, 4
_DATE_TIME_ORIGINAL = 36867

# EXIF says "YYYY:MM:DD HH:MM:SS"; some writers use '-' or 'T', or append sub-seconds or an offset,
# which are dropped: ``taken`` is the camera's naive clock.
_DATE = re.compile(r"(\d{4})[:\-/.](\d{2})[:\-/.](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
# No photograph is older (1826): an earlier year is a reset or garbage clock, not a date.
_EARLIEST_YEAR = 1826


class _Ignored(Exception):
    """Why one value was ignored, in words that carry no coordinate."""


def read_photo_metadata(data: bytes) -> PhotoMetadata:
    """The metadata of a photo not yet opened: Pillow reads the header only, never the pixels.
    Never raises; what cannot be opened gives no place, no date and one problem."""
    # Pillow registers the WebP opener only on full init; open(formats=...) does not trigger it.
    Image.init()
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            # PNG's getexif() decodes the pixels to look for an eXIf chunk after the image data;
            # one before it is already in info, and a late one is not worth a full decode.
            if image.format == "PNG" and "exif" not in image.info:
                return PhotoMetadata()
            exif = image.getexif()
    except Exception:
        return PhotoMetadata(problems=(UNREADABLE,))
    return read_metadata(exif)


def read_metadata(exif: Image.Exif) -> PhotoMetadata:
    """Place and date from an opened image's ``getexif()``. Never raises.

    - GPS needs GPSLatitude and GPSLongitude, each with its reference (N/S, E/W). A missing or
      unknown reference ignores the position (guessing N/E would put a southern photo in the
      wrong hemisphere). A GPS block with neither latitude nor longitude (Pillow gives an empty
      one for a missing block) is no GPS and no problem.
    - Values may be degrees/minutes/seconds as 1 to 3 rationals, ints or floats, or one number;
      decimal minutes with 0 seconds work as they are. A zero denominator, nan or inf, a
      negative part, minutes or seconds of 60 or more, |lat| > 90 or |lon| > 180 ignore it.
    - Exactly 0, 0 is what many devices write without a fix: ignored.
    - ``taken`` is DateTimeOriginal only (DateTime changes on every edit). Blank is no date;
      anything else that is not a real date ("0000:00:00 00:00:00") is ignored.

    Each ignored thing adds a problem in words; none ever holds a coordinate, since problems
    reach the answer and the logs."""
    problems: list[str] = []
    try:
        lat, lon = _read_gps(exif, problems)
        taken = _read_taken(exif, problems)
    except Exception:
        # The readers catch what broken files do; this is for what nobody foresaw, since a
        # photo's metadata must never cost its identification.
        return PhotoMetadata(problems=(UNREADABLE,))
    return PhotoMetadata(lat=lat, lon=lon, taken=taken, problems=tuple(problems))


def _read_gps(exif: Image.Exif, problems: list[str]) -> tuple[float | None, float | None]:
    try:
        gps = exif.get_ifd(_GPS_IFD)
    except Exception:
        problems.append("GPS ignored: the GPS block could not be read")
        return None, None
    if _LAT not in gps and _LON not in gps:
        return None, None
    found: list[float] = []
    for name, value_tag, ref_tag, refs, limit in (
        ("latitude", _LAT, _LAT_REF, "NS", 90.0),
        ("longitude", _LON, _LON_REF, "EW", 180.0),
    ):
        try:
            found.append(_coordinate(gps, value_tag, ref_tag, refs, limit))
        except _Ignored as why:
            problems.append(f"GPS ignored: {name} {why}")
        except Exception:
            problems.append(f"GPS ignored: {name} could not be read")
    if len(found) != 2:
        return None, None
    lat, lon = found
    if lat == 0 and lon == 0:
        problems.append("GPS ignored: latitude and longitude are both exactly zero, a device's 'no fix'")
        return None, None
    return lat, lon


def _coordinate(gps: dict[int, Any], value_tag: int, ref_tag: int, refs: str, limit: float) -> float:
    if value_tag not in gps:
        raise _Ignored("is missing")
    degrees = _angle(gps[value_tag], limit)
    ref = _ref(gps.get(ref_tag))
    if ref is None:
        raise _Ignored(f"reference ({refs[0]} or {refs[1]}) is missing")
    if ref not in (refs[0], refs[1]):
        raise _Ignored(f"reference is not {refs[0]} or {refs[1]}")
    return -degrees if ref == refs[1] else degrees


def _angle(value: object, limit: float) -> float:
    parts = value if isinstance(value, tuple) else (value,)
    if not parts:
        raise _Ignored("is empty")
    if len(parts) > 3:
        raise _Ignored("has more than degrees, minutes and seconds")
    numbers = [_number(part) for part in parts]
    if any(number < 0 for number in numbers):
        raise _Ignored("has a negative part")
    if any(number >= 60 for number in numbers[1:]):
        raise _Ignored("has minutes or seconds of 60 or more")
    degrees, minutes, seconds = (*numbers, 0.0, 0.0)[:3]
    total = degrees + minutes / 60 + seconds / 3600
    if total > limit:
        raise _Ignored(f"is beyond {limit:.0f} degrees")
    return total


def _number(value: object) -> float:
    if isinstance(value, IFDRational):
        # Pillow turns n/0 into nan; say what the file actually holds.
        if value.denominator == 0:
            raise _Ignored("has a zero denominator")
        number = float(value)
    elif isinstance(value, int | float | Fraction) and not isinstance(value, bool):
        number = float(value)
    else:
        raise _Ignored("is not a number")
    if not math.isfinite(number):
        raise _Ignored("is not a finite number")
    return number


def _ref(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return value.strip(" \x00").upper() or None


def _read_taken(exif: Image.Exif, problems: list[str]) -> dt.datetime | None:
    try:
        value = exif.get_ifd(_EXIF_IFD).get(_DATE_TIME_ORIGINAL)
    except Exception:
        problems.append("date taken ignored: the EXIF block could not be read")
        return None
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        problems.append("date taken ignored: it is not text")
        return None
    text = value.strip(" \x00")
    if not text:
        return None
    match = _DATE.match(text)
    try:
        if match is None:
            raise ValueError(text)
        year, month, day, hour, minute, second = (int(group) for group in match.groups())
        taken = dt.datetime(year, month, day, hour, minute, second)
    except (ValueError, OverflowError):
        problems.append("date taken ignored: it is not a valid date")
        return None
    if taken.year < _EARLIEST_YEAR:
        problems.append("date taken ignored: the year is before photography")
        return None
    return taken
