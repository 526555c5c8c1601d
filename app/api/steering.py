"""The request parameters that steer an answer (``app.identification.request.Steering``), shared by
/v1/identify and the classifier endpoints: validated here, read into a ``Steering`` (an uploaded
or installed species list read once), and the place of the classifier endpoints."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, File, Query, UploadFile

from app.api.deps import SettingsDep
from app.errors import BadRequest
from app.identification.request import GeoMode, Place, PlaceSource, Steering
from app.identification.species_lists import SpeciesList, SpeciesLists

Lat = Annotated[float | None, Query(ge=-90, le=90, description="WGS84 latitude of the observation")]
Lon = Annotated[float | None, Query(ge=-180, le=180, description="WGS84 longitude")]
When = Annotated[dt.date | None, Query(description="when (ISO 8601, e.g. 2026-06-21)")]

TAXON = (
    "only species under this taxon are ranked, renormalised to sum to 1 (`filters` says what was kept): "
    "a scientific name of any rank, case-insensitive (Lepidoptera, Aves, Vanessa, Danaus plexippus; "
    "Animalia or Metazoa, Plantae or Viridiplantae), or a key of the taxonomy in use (GBIF's where "
    "`link-gbif` linked the labels, else NCBI's from the shipped offline taxonomy)"
)
LIST_NAME = (
    "only the species on this list are ranked (renormalised): the name of a list installed in LISTS_DIR "
    "(`uk_butterflies` for volumes/lists/uk_butterflies.txt); or upload the list in the multipart field "
    "of the same name"
)
LIST_FILE = (
    "a species list to rank within: text (one scientific name a line, # comments; BirdNET's "
    "'Genus species_Common name' lines) or CSV with a scientific_name/name column; at most "
    "LISTS_MAX_BYTES. A plain form value is taken as an installed list's name"
)
GEO = (
    "what lat/lon do: `prior` (default) weighs each species by GBIF's records in the cell "
    "(combined_score = vision_score x geo_score, renormalised); `filter` keeps only the species recorded "
    "there (a removed best species is rolled up to its nearest ancestor with records); `off` ignores "
    "the place"
)
MIN_SCORE_HELP = (
    "this request's RANKING_MIN_SCORE: a best score under it is `no_match: true`, `low_confidence` (scores "
    "are probabilities: calibrated on /v1/identify, the model's own on the classifier endpoints)"
)
PHOTO_METADATA = (
    "without lat/lon, use the photo's own EXIF GPS as the place (and its DateTimeOriginal as the date "
    "when none is given); `place.source` says which was used, `place.problems` what was ignored"
)
ROLLUP = (
    "this request's RANKING_ROLLUP_THRESHOLD: when no species reaches it, the deepest taxon whose species' "
    "scores sum to it is reported as `rollup`"
)


async def _steering(
    settings: SettingsDep,
    taxon: Annotated[str | None, Query(min_length=1, max_length=200, description=TAXON)] = None,
    species_list: Annotated[str | None, Query(min_length=1, max_length=64, description=LIST_NAME)] = None,
    species_list_upload: Annotated[
        UploadFile | str | None, File(alias="species_list", description=LIST_FILE)
    ] = None,
    geo: Annotated[GeoMode, Query(description=GEO)] = "prior",
    min_score: Annotated[float | None, Query(ge=0.0, le=1.0, description=MIN_SCORE_HELP)] = None,
    rollup_threshold: Annotated[float | None, Query(gt=0.0, le=1.0, description=ROLLUP)] = None,
) -> Steering:
    if species_list is not None and species_list_upload is not None:
        raise BadRequest("give species_list once: a list's name (query) or a file (multipart)")
    return Steering(
        taxon=taxon.strip() if taxon is not None else None,
        species_list=await _species_list(
            SpeciesLists.from_settings(settings.lists), species_list, species_list_upload
        ),
        geo=geo,
        min_score=min_score,
        rollup_threshold=rollup_threshold,
    )


async def _species_list(
    lists: SpeciesLists, name: str | None, upload: UploadFile | str | None
) -> SpeciesList | None:
    if isinstance(upload, str):
        name = upload.strip()
    elif upload is not None:
        data = await upload.read(lists.max_bytes + 1)  # no more than the cap is ever held
        return lists.upload(data, upload.filename)
    if name is None:
        return None
    return await asyncio.to_thread(lists.load, name)  # a small file, but a disk read all the same


SteeringDep = Annotated[Steering, Depends(_steering)]


@dataclass(frozen=True)
class GivenPlace:
    """What a request says of where and when, and whether the photos' own EXIF may fill in."""

    place: Place | None
    date: tuple[dt.date, PlaceSource] | None  # a date without lat/lon (the photo's GPS may give them)
    use_photo_metadata: bool


async def _place(
    steering: SteeringDep,
    lat: Lat = None,
    lon: Lon = None,
    date: When = None,
    use_photo_metadata: Annotated[bool, Query(description=PHOTO_METADATA)] = True,
) -> GivenPlace:
    if (lat is None) != (lon is None):
        raise BadRequest("give lat and lon together", detail={"lat": lat, "lon": lon})
    if steering.geo == "filter" and lat is None:
        raise BadRequest(
            "geo=filter keeps the species recorded near a place: give lat and lon", detail={"geo": "filter"}
        )
    if lat is not None and lon is not None:
        return GivenPlace(Place(lat, lon, date), None, use_photo_metadata)
    return GivenPlace(None, (date, "request") if date is not None else None, use_photo_metadata)


PlaceDep = Annotated[GivenPlace, Depends(_place)]
