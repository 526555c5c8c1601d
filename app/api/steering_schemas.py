"""The public contract's account of what steered an answer (``app.api.steering``): the taxon
and species-list filters, the place and its mode, and the thresholds used. Shared by the
classifier endpoints (``schemas.ClassificationResponse``) and /v1/identify (``observation_schemas``)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field


class TaxonFilterInfo(BaseModel):
    key: int | None = Field(description="the taxon's key in `source`'s taxonomy")
    name: str
    rank: str = Field(description="kingdom, phylum, class, order, family, genus, species, ...")
    source: Literal["gbif", "ncbi"] | None = Field(
        default=None, description="the taxonomy the key is of: GBIF's (link-gbif), else the shipped NCBI one"
    )


class SpeciesListInfo(BaseModel):
    name: str = Field(description="the installed list's file, or the uploaded file's name")
    source: Literal["installed", "upload"]
    names: int = Field(description="distinct names the list holds")
    unmatched: list[str] = Field(description="the list's names no model asked has (as written in the list)")


class FiltersInfo(BaseModel):
    """What a taxon or species list kept (null when neither was given)."""

    taxon: TaxonFilterInfo | None = None
    species_list: SpeciesListInfo | None = None
    kept_classes: int | None = Field(
        default=None,
        description="classes of the answering model the filters keep; null when no model answered",
    )
    kept_mass: float | None = Field(
        default=None,
        description="the probability the kept species held together before renormalising (their scores "
        "are divided by it, so they sum to 1); low: the photo does not look like the kept species",
    )
    excluded_models: dict[str, str] = Field(
        default={}, description="models not asked because the filters keep none of their species -> why"
    )


class Thresholds(BaseModel):
    min_score: float = Field(
        description="under this best score: no_match, low_confidence (RANKING_MIN_SCORE or min_score)"
    )
    rollup_threshold: float = Field(
        description="the rollup's threshold (RANKING_ROLLUP_THRESHOLD or rollup_threshold)"
    )


class PlaceInfo(BaseModel):
    """Where and when the observation was made, as the answer used it (the place's coordinates
    never reach the logs)."""

    lat: float | None = Field(default=None, description="WGS84; null: no place known")
    lon: float | None = None
    date: dt.date | None = None
    source: Literal["request", "row", "deployment", "photo"] | None = Field(
        default=None,
        description="where lat/lon came from: the request's lat/lon, a batch's CSV row or Camtrap DP "
        "deployment, or the photo's own EXIF GPS (when none was given and use_photo_metadata is on)",
    )
    date_source: Literal["request", "row", "deployment", "photo"] | None = Field(
        default=None, description="where the date came from, when not from `source` (e.g. the photo's EXIF)"
    )
    problems: list[str] = Field(
        default=[],
        description="the photos' metadata that was ignored (broken or out-of-range EXIF), in words",
    )


class GeoCellInfo(BaseModel):
    south: float
    north: float
    west: float
    east: float
    month: int | None


class GeoInfo(BaseModel):
    status: Literal["applied", "not_requested", "unavailable", "not_linked", "off"]
    reason: str | None = Field(default=None, description="why there is no prior")
    cell: GeoCellInfo | None = None
    cell_records: int | None = Field(
        default=None,
        description="records in the cell, all species (a range table's: those it kept, over `months`)",
    )
    cache: Literal["hit", "miss", "stale"] | None = Field(
        default=None, description="GBIF's cache (source `gbif`); null for a range table"
    )
    mode: Literal["off", "prior", "filter"] = Field(default="prior", description="the geo= asked")
    recorded_species: int | None = Field(
        default=None, description="geo=filter: the model's species GBIF has records of in the cell"
    )
    source: Literal["table", "gbif"] | None = Field(
        default=None,
        description="where the counts came from (GEO_PRIOR_SOURCE): `table`, the range table built "
        "from a GBIF download (`build-range`), or `gbif`, GBIF's occurrence search; null when none "
        "were asked for",
    )
    months: list[int] | None = Field(
        default=None,
        description="the months counted: the date's month (gbif), or it and the two beside it "
        "(table: December is next to January); null: every month (no date, or no prior)",
    )
