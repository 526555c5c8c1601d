"""The public contract of POST /v1/identify (the shared pieces are in ``schemas``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api import examples
from app.api.schemas import ImageInfo, IndexInfo, LookupResult, RollupInfo, TaxonInfo, Timings
from app.api.steering_schemas import FiltersInfo, GeoInfo, PlaceInfo, Thresholds


class ObservedSpeciesResult(BaseModel):
    rank: int = Field(ge=1, description="1 = best")
    model: str = Field(description="the model that named it")
    group: str | None
    index: int = Field(ge=0, description="class index in that model's label map")
    scientific_name: str
    common_name: str | None = None
    score: float = Field(
        ge=0.0,
        le=1.0,
        description="calibrated probability for the observation, after the filters and the place "
        "(= combined_score)",
    )
    vision_score: float = Field(
        ge=0.0, le=1.0, description="the same before the place (after a taxon/species_list renormalisation)"
    )
    geo_score: float | None = Field(
        default=None,
        description="what the place multiplied vision_score by: the prior's weight (floor..1), 1 under "
        "geo=filter; null without the place",
    )
    combined_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="vision_score * geo_score renormalised over the species (= score)",
    )
    geo_weight: float | None = Field(
        default=None, description="the prior's weight w(n) (floor..1), in both geo modes; null without"
    )
    geo_records: int | None = Field(default=None, description="GBIF records of the species in the cell")
    per_photo: list[float] = Field(description="each photo's calibrated probability for this species")
    taxonomy: TaxonInfo | None = None


class ModelAssessment(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    group: str | None
    signal: Literal["class_cosine", "max_probability"] = Field(description="the scope signal (README)")
    scope: float = Field(description="the best photo's scope signal for the species the photos point to")
    threshold: float = Field(
        description="accepted at or above (the model's calibration, else RANKING_MIN_SCORE)"
    )
    accepted: bool
    background: float | None = Field(description="mean probability of the model's background class")
    best: str = Field(description="the model's best species for the photos, whatever its scope")
    best_score: float


class IndexAnswer(BaseModel):
    """What the species index (/img_url's) says about the photos, beside the classifiers."""

    index: IndexInfo
    results: list[LookupResult] = Field(description="best first: each species' mean share of the votes")
    no_match: bool
    no_match_reason: Literal["empty_index", "low_confidence"] | None = None
    rollup: RollupInfo | None = None


class IdentifyResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), json_schema_extra={"examples": examples.IDENTIFY})

    results: list[ObservedSpeciesResult] = Field(
        description="best first, across models; empty when no model covers the photos"
    )
    no_match: bool
    no_match_reason: Literal["not_an_organism", "out_of_scope", "low_confidence", "filtered_out"] | None = (
        Field(
            default=None,
            description="filtered_out: geo=filter kept none of the species (nothing recorded there)",
        )
    )
    group: str | None = Field(
        description="the group chosen (its model's manifest group); null when none fits"
    )
    model: str | None = Field(description="the model chosen; null when no model's scope accepts the photos")
    why: str = Field(description="why that model, in words")
    models: list[ModelAssessment] = Field(description="what every model made of the photos")
    rollup: RollupInfo | None = None
    geo: GeoInfo
    photos: list[ImageInfo]
    timings_ms: Timings
    index: IndexAnswer | None = Field(
        default=None, description="the species index's answer, when one is served"
    )
    filters: FiltersInfo | None = Field(
        default=None, description="what taxon/species_list kept; null without"
    )
    thresholds: Thresholds | None = Field(default=None, description="the thresholds this answer used")
    place: PlaceInfo = Field(default_factory=PlaceInfo, description="the place used, and where it came from")
