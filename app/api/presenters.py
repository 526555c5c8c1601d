"""Domain results -> the public JSON contract (``schemas``). The only place the two meet."""

from __future__ import annotations

from dataclasses import asdict

from app.api.schemas import (
    ClassificationResponse,
    ImageInfo,
    IndexInfo,
    LookupResponse,
    LookupResult,
    ModelInfo,
    RollupInfo,
    SpeciesResult,
    TaxonInfo,
    Timings,
)
from app.enrich.taxonomy import Rollup, Taxon
from app.imaging.decode import DecodedImage
from app.imaging.photo import Photo
from app.index.artifacts import SpeciesIndex
from app.services.catalog import ModelStatus
from app.services.identify import Identification
from app.services.identify import Timings as StageTimings
from app.services.lookup import LookupAnswer


def taxon_info(taxon: Taxon | None) -> TaxonInfo | None:
    return None if taxon is None else TaxonInfo.model_validate(taxon.model_dump(by_alias=True))


def rollup_info(rollup: Rollup | None) -> RollupInfo | None:
    return None if rollup is None else RollupInfo.model_validate(rollup.model_dump())


def image_info(photo: Photo | None, image: DecodedImage | None) -> ImageInfo:
    assert photo is not None and image is not None, "a served answer carries its photo"
    return ImageInfo(
        source=photo.source,
        format=image.format,
        width=image.width,
        height=image.height,
        bytes=len(photo.data),
    )


def timings(t: StageTimings | None) -> Timings:
    assert t is not None, "a served answer carries its timings"
    return Timings(**asdict(t))


def classification(found: Identification) -> ClassificationResponse:
    return ClassificationResponse(
        model=found.model.spec.name,
        model_version=found.model.spec.version,
        results=[
            SpeciesResult(
                rank=hit.rank,
                index=hit.index,
                scientific_name=hit.label.scientific_name,
                common_name=hit.label.common_name,
                score=hit.score,
                taxonomy=taxon_info(hit.taxon),
            )
            for hit in found.species
        ],
        no_match=found.no_match,
        no_match_reason=found.no_match_reason,
        background_score=found.background_score,
        rollup=rollup_info(found.rollup),
        image=image_info(found.photo, found.image),
        timings_ms=timings(found.timings),
    )


def index_info(index: SpeciesIndex) -> IndexInfo:
    m = index.manifest
    return IndexInfo(
        version=m.version,
        embedder=m.embedder.name,
        n_vectors=m.n_vectors,
        n_species=m.n_species,
        index_type=m.index_type,
        dim=m.dim,
        created_at=m.created_at,
    )


def lookup(found: LookupAnswer) -> LookupResponse:
    return LookupResponse(
        index=index_info(found.index),
        results=[
            LookupResult(
                rank=hit.rank,
                index=hit.index,
                scientific_name=hit.label.scientific_name,
                common_name=hit.label.common_name,
                score=hit.score,
                neighbours=hit.neighbours,
                similarity=hit.similarity,
                taxonomy=taxon_info(hit.taxon),
            )
            for hit in found.species
        ],
        no_match=found.no_match,
        no_match_reason=found.no_match_reason,
        rollup=rollup_info(found.rollup),
        image=image_info(found.photo, found.image),
        timings_ms=timings(found.timings),
    )


def model_info(status: ModelStatus) -> ModelInfo:
    return ModelInfo.model_validate(asdict(status))
