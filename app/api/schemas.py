"""The public contract: every response body is one of these models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api import examples
from app.api.steering_schemas import FiltersInfo, GeoInfo, PlaceInfo, Thresholds


class TaxonInfo(BaseModel):
    """A usage of ``source``'s taxonomy (GBIF's backbone, where link-gbif linked the label; else
    NCBI Taxonomy, shipped) and its classification, in GBIF's field names whatever the source.
    ``kingdom`` is always GBIF's name (Animalia, Plantae, Fungi); the keys are ``source``'s."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    usageKey: int = Field(description="the usage's key in source's taxonomy (GBIF's key, or an NCBI taxid)")
    canonicalName: str | None = None
    scientificName: str | None = None
    rank: str | None = None
    status: str | None = None
    matchType: str | None = None
    kingdom: str | None = None
    phylum: str | None = None
    class_: str | None = Field(default=None, alias="class")
    order: str | None = None
    family: str | None = None
    genus: str | None = None
    kingdomKey: int | None = None
    phylumKey: int | None = None
    classKey: int | None = None
    orderKey: int | None = None
    familyKey: int | None = None
    genusKey: int | None = None
    speciesKey: int | None = Field(default=None, description="the accepted species (for a synonym)")
    source: Literal["gbif", "ncbi"] = Field(
        default="gbif",
        description="the taxonomy the keys are of: gbif (link-gbif) or ncbi (shipped, offline)",
    )
    id: int | None = Field(default=None, description="the usage's id in source's taxonomy (= usageKey)")
    vernacularName: str | None = Field(default=None, description="source's common name, where it has one")
    fallback: str | None = Field(
        default=None,
        description="ncbi: the label's name is not in NCBI Taxonomy, and this taxon is its species "
        "(matchType FALLBACK_SPECIES) or its genus (FALLBACK_GENUS); null for an exact match",
    )
    ncbiKingdom: str | None = Field(
        default=None, description="ncbi: NCBI's name of the kingdom (Metazoa, Viridiplantae, Fungi)"
    )


class RollupInfo(BaseModel):
    rank: str = Field(description="genus, family, order, class, phylum or kingdom")
    name: str
    usageKey: int | None = Field(description="key of the taxon in source's taxonomy")
    score: float = Field(ge=0.0, le=1.0, description="summed score of the species under it")
    reason: str | None = Field(
        default=None,
        description="null: no species reaches the rollup threshold; else why the taxon is reported "
        "(geo=filter: the photo's best species has no GBIF record in the cell, this ancestor has)",
    )
    source: Literal["gbif", "ncbi"] | None = Field(
        default=None, description="the taxonomy usageKey is a key of (gbif or ncbi); null: not known"
    )


class SpeciesResult(BaseModel):
    rank: int = Field(ge=1, description="1 = best")
    index: int = Field(ge=0, description="class index in the model's label map")
    scientific_name: str
    common_name: str | None = Field(default=None, description="where the label files give one")
    score: float = Field(ge=0.0, le=1.0, description="the model's probability for this class")
    taxonomy: TaxonInfo | None = Field(
        default=None,
        description="the label's taxon: GBIF's backbone where the label map was linked (python -m app "
        "link-gbif), else NCBI Taxonomy's (shipped beside the manifest, offline)",
    )


class ClassifiedSpecies(SpeciesResult):
    """A classifier endpoint's species: its probability and what the filters and the place did."""

    score: float = Field(
        ge=0.0,
        le=1.0,
        description="the final probability (= combined_score): the model's own, renormalised over the "
        "species a taxon or species_list keeps; when lat/lon weigh it (geo=prior|filter), the model's "
        "calibrated probability times the place's weight, renormalised (as on /v1/identify)",
    )
    vision_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="the model's probability after the filters, before the place",
    )
    geo_score: float | None = Field(
        default=None,
        description="the place's weight on this species: the prior's (GEO_PRIOR_FLOOR..1), 1 under "
        "geo=filter; null without the place",
    )
    combined_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="the place's weight times the calibrated vision probability, renormalised over the "
        "species (= score)",
    )
    geo_records: int | None = Field(default=None, description="GBIF records of the species in the cell")


class ImageInfo(BaseModel):
    source: Literal["url", "upload", "file"]
    format: str
    width: int = Field(description="pixels, after EXIF orientation")
    height: int
    bytes: int


class Timings(BaseModel):
    fetch_ms: float | None = Field(default=None, description="downloading img_url; null for uploads")
    decode_ms: float
    infer_ms: float
    search_ms: float | None = Field(default=None, description="index search and vote (/img_url)")
    total_ms: float


class ClassificationResponse(BaseModel):
    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={"examples": examples.CLASSIFICATION},
    )

    model: str = Field(description="manifest name of the model that answered")
    model_version: str
    results: list[ClassifiedSpecies] = Field(description="best first; never the background class")
    no_match: bool = Field(
        description="true when the background class wins or the best species is under the "
        "confidence threshold: the results are then only guesses"
    )
    no_match_reason: Literal["background", "low_confidence", "filtered_out"] | None = Field(
        default=None, description="filtered_out: the filters keep no species with any probability"
    )
    background_score: float | None = Field(
        default=None, description="probability of the background class, for models that have one"
    )
    rollup: RollupInfo | None = Field(
        default=None,
        description="when no species reaches RANKING_ROLLUP_THRESHOLD: the deepest taxon whose species' "
        "scores sum to it (needs a linked taxonomy)",
    )
    image: ImageInfo
    timings_ms: Timings
    filters: FiltersInfo | None = Field(
        default=None, description="what taxon/species_list kept; null without"
    )
    geo: GeoInfo | None = Field(default=None, description="what the place (lat/lon, geo=) did")
    thresholds: Thresholds | None = Field(default=None, description="the thresholds this answer used")
    place: PlaceInfo | None = Field(default=None, description="the place used, and where it came from")


class LookupResult(SpeciesResult):
    index: int = Field(ge=0, description="label id in the species index")
    score: float = Field(ge=0.0, le=1.0, description="share of the neighbours' similarity-weighted vote")
    neighbours: int = Field(ge=1, description="how many of the nearest photos are this species")
    similarity: float = Field(description="cosine similarity of this species' nearest photo (1 = identical)")


class IndexInfo(BaseModel):
    version: str
    embedder: str
    n_vectors: int = Field(description="photos in the index")
    n_species: int
    index_type: Literal["flat", "hnsw"]
    dim: int = Field(description="vector size after PCA")
    created_at: datetime


class LookupResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": examples.LOOKUP},
    )

    index: IndexInfo
    results: list[LookupResult] = Field(description="best first")
    no_match: bool = Field(description="true when the best species' score is under RANKING_MIN_SCORE")
    no_match_reason: Literal["empty_index", "low_confidence"] | None = None
    rollup: RollupInfo | None = Field(default=None, description="as for the classifiers")
    image: ImageInfo
    timings_ms: Timings


class IndexItemsResponse(BaseModel):
    added: int = Field(description="photos added")
    species: str
    new_species: bool = Field(description="the species was not in the index before")
    index: IndexInfo


class GbifMatch(TaxonInfo):
    """GBIF's species match: the taxon (GBIF's own field names) and how it matched, plus whether
    to trust it blindly."""

    model_config = ConfigDict(
        json_schema_extra={"examples": examples.GBIF_MATCH},
    )

    matchType: str = Field(description="EXACT, FUZZY or HIGHERRANK (NONE is answered with 404)")
    confidence: int | None = None
    synonym: bool | None = None
    acceptedUsageKey: int | None = None
    species: str | None = None
    speciesKey: int | None = None
    note: str | None = None
    alternatives: list[GbifMatch] | None = Field(default=None, description="with verbose=true")
    flagged: bool = Field(default=False, description="FUZZY or HIGHERRANK: check before relying on it")
    flag_reason: str | None = None
    cache: Literal["hit", "miss", "stale"] | None = Field(
        default=None, description="stale: GBIF failed and an expired cached answer was served"
    )


class Explanation(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    class_index: int = Field(ge=0, description="the top class, the one explained")
    scientific_name: str
    common_name: str | None = None
    score: float = Field(ge=0.0, le=1.0, description="its probability on the whole photo")
    patch: int = Field(description="side of the grey square, in pixels of the model's input")
    stride: int
    input_size: tuple[int, int] = Field(description="height, width of the model's input")
    grid: list[list[float]] = Field(
        description="probability lost with the square at each place (rows top to bottom); "
        "high = the model looked there"
    )
    image: ImageInfo
    timings_ms: Timings


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    task: Literal["classifier", "embedder"]
    format: Literal["tflite", "saved_model", "head"]
    embedder: str | None = Field(default=None, description="a head's embedder")
    version: str
    description: str
    group: str | None = Field(description="legacy route: group 'bird' serves POST /bird_url")
    endpoint: str | None = Field(description="where to send photos for this model")
    state: Literal["pending", "loading", "ready", "missing", "failed"]
    reason: str | None = Field(description="why the model is not ready")
    num_classes: int | None
    output_dim: int | None
    input_size: tuple[int, int]
    background_index: int | None
    sha256: str | None
    load_seconds: float | None
    manifest: str | None = Field(
        description="the manifest file the entry comes from: the shipped one or the user's (local.toml)"
    )
    refused: str | None = Field(
        default=None,
        description="why the last reload refused a new version of this entry (this one keeps serving)",
    )


class ModelList(BaseModel):
    models: list[ModelInfo]


class ModelReload(BaseModel):
    reloaded: list[str] = Field(description="entries loaded anew: new, or their entry or file changed")
    refused: dict[str, str] = Field(
        default={}, description="changed entries whose new version failed to load -> why; the old one serves"
    )
    models: list[ModelInfo]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "loading", "not_ready"]
    models: dict[str, str] = Field(description="model name -> state")
    index: Literal["absent", "ready", "refused"] = Field(
        description="the /img_url species index; it does not gate readiness (the classifiers work without it)"
    )
    index_note: str | None = Field(
        default=None,
        description="absent: the exact command that builds an index; refused: why (None when ready)",
    )


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable error code")
    message: str = Field(description="what went wrong, and what to do about it")
    detail: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries so /docs shows the error shape for each status a route can return."""
    return {status: {"model": ErrorResponse} for status in statuses}
