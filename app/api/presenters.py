"""Domain results -> the public JSON contract (``schemas``). The only place the two meet."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal, cast

from app.api.observation_schemas import (
    IdentifyResponse,
    IndexAnswer,
    ModelAssessment,
    ObservedSpeciesResult,
)
from app.api.schemas import (
    ClassificationResponse,
    ClassifiedSpecies,
    ImageInfo,
    IndexInfo,
    LookupResponse,
    LookupResult,
    ModelInfo,
    RollupInfo,
    TaxonInfo,
    Timings,
)
from app.api.steering_schemas import (
    FiltersInfo,
    GeoCellInfo,
    GeoInfo,
    PlaceInfo,
    SpeciesListInfo,
    TaxonFilterInfo,
    Thresholds,
)
from app.enrich.taxonomy import Rollup, Taxon
from app.identification.answer import Answer, FilterReport
from app.identification.lookup import LookupAnswer
from app.identification.place import Whereabouts
from app.identification.steer import GeoOutcome
from app.identification.timings import Timings as StageTimings
from app.imaging.decode import DecodedImage
from app.imaging.photo import Photo
from app.index.artifacts import SpeciesIndex
from app.services.catalog import ModelStatus


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
    return Timings(
        fetch_ms=t.fetch_ms,
        decode_ms=t.decode_ms,
        infer_ms=t.infer_ms,
        search_ms=t.search_ms,
        total_ms=t.total_ms,
    )


ClassicReason = Literal["background", "low_confidence", "filtered_out"]


def classic_reason(found: Answer) -> ClassicReason | None:
    """The classifier endpoints' word for why there is no match: their background class winning
    has always been ``background``."""
    reason = found.no_match_reason
    return "background" if reason == "not_an_organism" else cast("ClassicReason | None", reason)


def classification(found: Answer) -> ClassificationResponse:
    """A classifier endpoint's JSON, as it always was: one photo, the named model's own
    probabilities; its background class winning is ``background``."""
    model = found.chosen.model
    photo, image = found.photos[0]
    return ClassificationResponse(
        model=model.spec.name,
        model_version=model.spec.version,
        results=[
            ClassifiedSpecies(
                rank=s.rank,
                index=s.index,
                scientific_name=s.label.scientific_name,
                common_name=s.label.common_name,
                score=s.score,
                taxonomy=taxon_info(s.taxon),
                vision_score=s.vision_score,
                geo_score=s.geo_score,
                combined_score=s.score,
                geo_records=s.geo_records,
            )
            for s in found.species
        ],
        no_match=found.no_match,
        no_match_reason=classic_reason(found),
        background_score=found.chosen.background,
        rollup=rollup_info(found.rollup),
        image=image_info(photo, image),
        timings_ms=timings(found.timings),
        filters=filters_info(found.filters),
        geo=geo_info(found.geo),
        thresholds=thresholds(found.min_score, found.rollup_threshold),
        place=place_info(found.where),
    )


def thresholds(min_score: float | None, rollup_threshold: float | None) -> Thresholds | None:
    if min_score is None or rollup_threshold is None:
        return None
    return Thresholds(min_score=min_score, rollup_threshold=rollup_threshold)


def filters_info(found: FilterReport | None) -> FiltersInfo | None:
    if found is None:
        return None
    listed = found.species_list
    return FiltersInfo(
        taxon=TaxonFilterInfo(
            key=found.taxon.key, name=found.taxon.name, rank=found.taxon.rank, source=found.taxon.source
        )
        if found.taxon is not None
        else None,
        species_list=SpeciesListInfo(
            name=listed.name, source=listed.source, names=len(listed.names), unmatched=list(found.unmatched)
        )
        if listed is not None
        else None,
        kept_classes=found.kept_classes,
        kept_mass=round(found.kept_mass, 6) if found.kept_mass is not None else None,
        excluded_models=found.excluded,
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


def lookup_results(found: LookupAnswer) -> list[LookupResult]:
    return [
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
    ]


def lookup(found: LookupAnswer) -> LookupResponse:
    return LookupResponse(
        index=index_info(found.index),
        results=lookup_results(found),
        no_match=found.no_match,
        no_match_reason=found.no_match_reason,
        rollup=rollup_info(found.rollup),
        image=image_info(found.photo, found.image),
        timings_ms=timings(found.timings),
    )


def observation(found: Answer) -> IdentifyResponse:
    accepted = found.model
    return IdentifyResponse(
        results=[
            ObservedSpeciesResult(
                rank=s.rank,
                model=s.model,
                group=s.group,
                index=s.index,
                scientific_name=s.label.scientific_name,
                common_name=s.label.common_name,
                score=s.score,
                vision_score=s.vision_score,
                geo_score=s.geo_score,
                combined_score=s.score,
                geo_weight=s.geo_weight,
                geo_records=s.geo_records,
                per_photo=[round(p, 6) for p in s.per_photo],
                taxonomy=taxon_info(s.taxon),
            )
            for s in found.species
        ],
        no_match=found.no_match,
        no_match_reason=found.no_match_reason,
        group=accepted.model.spec.group if accepted else None,
        model=accepted.model.name if accepted else None,
        why=found.why,
        models=[
            ModelAssessment(
                model=v.model.name,
                group=v.model.spec.group,
                signal=v.signal,
                scope=round(v.scope, 6),
                threshold=round(v.threshold, 6),
                accepted=v.accepted,
                background=v.background,
                best=v.model.labels[v.top].scientific_name,
                best_score=min(float(v.probabilities[v.top]), 1.0),
            )
            for v in found.verdicts
        ],
        rollup=rollup_info(found.rollup),
        geo=geo_info(found.geo),
        photos=[image_info(photo, image) for photo, image in found.photos],
        timings_ms=timings(found.timings),
        index=IndexAnswer(
            index=index_info(found.index.index),
            results=lookup_results(found.index),
            no_match=found.index.no_match,
            no_match_reason=found.index.no_match_reason,
            rollup=rollup_info(found.index.rollup),
        )
        if found.index is not None
        else None,
        filters=filters_info(found.filters),
        thresholds=thresholds(found.min_score, found.rollup_threshold),
        place=place_info(found.where),
    )


def place_info(where: Whereabouts) -> PlaceInfo:
    place = where.place
    if place is None:
        return PlaceInfo(problems=list(where.problems))
    return PlaceInfo(
        lat=place.lat,
        lon=place.lon,
        date=place.date,
        source=place.source,
        date_source=place.date_source,
        problems=list(where.problems),
    )


def geo_info(geo: GeoOutcome) -> GeoInfo:
    cell = geo.cell
    return GeoInfo(
        status=geo.status,
        reason=geo.reason,
        cell=GeoCellInfo(south=cell.south, north=cell.north, west=cell.west, east=cell.east, month=cell.month)
        if cell is not None
        else None,
        cell_records=geo.cell_records,
        cache=geo.cache,
        mode=geo.mode,
        recorded_species=int(geo.recorded.sum()) if geo.recorded is not None else None,
        source=geo.source,
        months=list(geo.months) if geo.status == "applied" and geo.months else None,
    )


def model_info(status: ModelStatus) -> ModelInfo:
    return ModelInfo.model_validate(asdict(status))
