"""Stage 5, the answer. In: the decision, the verdicts, the steering's report, the timings. Out:
one ``Answer`` type for every way in; the API's presenters map it to each endpoint's JSON (the
classifier endpoints' fields as they always were), the CLI prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.core import Label
from app.enrich.taxonomy import Rollup, Taxon
from app.identification.decide import ModelVerdict, NoMatchReason
from app.identification.lookup import LookupAnswer
from app.identification.place import Whereabouts
from app.identification.plan import Plan, ResolvedTaxon
from app.identification.request import ScoreKind
from app.identification.species_lists import SpeciesList
from app.identification.steer import GeoOutcome, Steered
from app.identification.timings import Timings
from app.imaging.decode import DecodedImage
from app.imaging.photo import Photo


@dataclass(frozen=True)
class Species:
    rank: int
    model: str
    group: str | None
    index: int  # class index in the model's label map
    label: Label
    score: float  # after the filters and the place (calibrated, or the model's own)
    vision_score: float  # before the place (after the taxon/list filters)
    per_photo: list[float]  # each photo's probability for this species (the same kind)
    taxon: Taxon | None
    geo_weight: float | None = None  # the prior's w(n); None without the place
    geo_records: int | None = None  # GBIF occurrences of the species in the cell
    geo_score: float | None = None  # what the place multiplied it by: w(n), or 1 under geo=filter


@dataclass(frozen=True)
class FilterReport:
    taxon: ResolvedTaxon | None
    species_list: SpeciesList | None
    unmatched: tuple[str, ...]
    excluded: dict[str, str]
    kept_classes: int | None  # of the answering model; None when no model answered
    kept_mass: float | None


def report(plan: Plan, model: str | None, steered: Steered | None) -> FilterReport | None:
    if not plan.filtering:
        return None
    keep = plan.keep.get(model) if model is not None else None
    return FilterReport(
        plan.taxon,
        plan.steering.species_list,
        plan.unmatched,
        plan.excluded,
        int(keep.sum()) if keep is not None else None,
        steered.kept_mass if steered is not None and keep is not None else None,
    )


@dataclass(frozen=True)
class Answer:
    species: list[Species]  # best first; never a background class
    no_match_reason: NoMatchReason | None
    rollup: Rollup | None
    chosen: ModelVerdict  # the model believed (its verdict says whether it accepted the photos)
    verdicts: list[ModelVerdict]  # every model asked
    why: str
    geo: GeoOutcome
    scores: ScoreKind
    min_score: float  # the thresholds this answer used
    rollup_threshold: float
    filters: FilterReport | None = None  # what the taxon/list filters kept; None without
    photos: list[tuple[Photo, DecodedImage]] = field(default_factory=list)  # empty for files
    timings: Timings | None = None
    where: Whereabouts = field(default_factory=Whereabouts.nowhere)  # the place used, and from where
    index: LookupAnswer | None = None  # what the species index says, when asked and served

    @property
    def no_match(self) -> bool:
        return self.no_match_reason is not None

    @property
    def model(self) -> ModelVerdict | None:
        """The model that answered: the chosen one, when it accepted the photos."""
        return self.chosen if self.chosen.accepted else None


@dataclass
class FileAnswers:
    paths: list[Path]
    results: list[Answer | None]  # None: the photo could not be read
    failures: list[tuple[Path, str]] = field(default_factory=list)
    # [N, C] the model's outputs, a row per path (an unreadable photo's row means nothing):
    # what evaluate scores again after the model's calibration.
    probabilities: npt.NDArray[np.float32] | None = None
