"""One observation of a collection, answered exactly as POST /v1/identify answers it: its photos
read from disk or fetched (under the API's SSRF rules and size cap), the place and date the
source gives, the command's options; the answer in the endpoint's JSON. Both engines (local,
Ray) call ``answer``; a photo that cannot be read, fetched or decoded fails its observation
alone, with the reason."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.api.presenters import observation as present
from app.batch.collection import Observation, PhotoRef
from app.errors import BadRequest, PayloadTooLarge, ServiceError
from app.identification.request import Defaults, PlaceSource, Request, Steering
from app.imaging.photo import Photo
from app.wiring import Services

log = logging.getLogger("app.batch")


@dataclass(frozen=True)
class Asked:
    """What the command asks of every observation (the options of /v1/identify)."""

    steering: Steering
    groups: frozenset[str] | None = None
    top_k: int = 5
    defaults: Defaults | None = None  # --lat/--lon/--date: where neither the source nor the photos say
    use_photo_metadata: bool = True


@dataclass(frozen=True, slots=True)
class Answered:
    answer: dict[str, Any] | None  # the /v1/identify JSON (by alias), None when it failed
    error: str | None
    answered_at: str  # ISO 8601 UTC


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def answer(services: Services, seq: int, observation: Observation, asked: Asked) -> Answered:
    try:
        photos = await asyncio.gather(*(_load(services, ref) for ref in observation.photos))
        steering = asked.steering
        if observation.taxon is not None:
            steering = replace(steering, taxon=observation.taxon)
        date = dt.date.fromisoformat(observation.date) if observation.date else None
        # A date without coordinates: a CSV row's, or a Camtrap DP media's timestamp.
        dated_by: PlaceSource = "deployment" if observation.deployment_id is not None else "row"
        request = Request(
            list(photos),
            observation.place,
            steering,
            asked.top_k,
            groups=asked.groups,
            use_photo_metadata=asked.use_photo_metadata,
            date=(date, dated_by) if date is not None else None,
            defaults=asked.defaults,
        )
        found = await services.identifier.identify(request)
    except ServiceError as exc:
        return Answered(None, exc.message, now())
    except Exception as exc:  # one observation's surprise must not end a run over a million
        # By its place in the source: an id may be an address that carries a token.
        log.exception("observation number %d failed", seq)
        return Answered(None, f"internal error ({type(exc).__name__}): see the log", now())
    return Answered(present(found).model_dump(mode="json", by_alias=True), None, now())


async def _load(services: Services, ref: PhotoRef) -> Photo:
    cap = services.settings.images.max_upload_bytes
    if ref.is_url:
        started = time.perf_counter()
        try:
            fetched = await services.fetcher.fetch(ref.location)
        except ServiceError as exc:  # the fetcher's message names no photo: which one, of five?
            raise BadRequest(f"{ref.given}: {exc.message}") from exc
        if not fetched.data:
            raise BadRequest(f"{ref.given}: the address returned an empty body")
        return Photo(fetched.data, "url", (time.perf_counter() - started) * 1000, ref.given)
    return Photo(await asyncio.to_thread(_read, Path(ref.location), ref.given, cap), "file", None, ref.given)


def _read(path: Path, given: str, cap: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > cap:
            raise PayloadTooLarge(
                f"{given}: {size} bytes; at most {cap} are accepted (IMAGES_MAX_UPLOAD_BYTES)"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise BadRequest(f"{given}: no such file") from None
    except IsADirectoryError:
        raise BadRequest(f"{given}: a folder, not a photo") from None
    except PermissionError:
        raise BadRequest(f"{given}: not readable (permission denied)") from None
    except OSError as exc:
        raise BadRequest(f"{given}: cannot be read ({exc.strerror})") from None
