"""Where someone was is personal data: the place a request gives (``lat``/``lon`` in the query
string) never reaches the logs. uvicorn's access log writes the request line whole, so its
records are rewritten with those values masked; the service's own log lines name no place."""

from __future__ import annotations

import logging
import re

# lat, lon and date in a query string (the date with a place narrows down where someone was).
_PLACE = re.compile(r"(?<=[?&])(lat|lon|date)=[^&\s]*", re.IGNORECASE)


def mask_place(text: str) -> str:
    return _PLACE.sub(r"\1=*", text)


class MaskPlaces(logging.Filter):
    """On uvicorn.access: its record's args are (client, method, path with query, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(mask_place(a) if isinstance(a, str) else a for a in record.args)
        return True


def mask_places_in_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, MaskPlaces) for f in access.filters):
        access.addFilter(MaskPlaces())
