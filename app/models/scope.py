"""Whether a model knows what a photo shows (its *scope*), and probabilities comparable across
models (calibration): what /v1/identify needs to choose among models and to say "I don't know".

Two signals, per photo:

- ``class_cosine``: the cosine between the photo's pre-logit features and the final-layer
  weight row of its top species. A photo the model was trained for lines up with that row; a
  plant shown to the birds model, or a cat, does not, whatever the softmax says. It needs the
  features and the class weights (TFLite classifiers declaring ``features_tensor`` and
  ``class_weights_tensor``) and no data. Measured on the AIY models (README, "Identify"), it
  routes and rejects far better than the probabilities do.
- ``max_probability``: the best species probability, for models without those tensors.

A model's ``calibration`` file (``python -m app calibrate``) holds the temperature that makes
its probabilities honest (``softmax(log(max(p, floor)) / T)``, fitted by likelihood on labelled
photos) and the scope threshold (the signal's 5th percentile on the model's own photos, so
~95 % of in-scope photos are accepted). Without one, probabilities stay as the model gives them
and the scope is ``max_probability >= RANKING_MIN_SCORE``: the classifier endpoints' old rule.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.models.backends.base import ClassWeights

log = logging.getLogger(__name__)

ScopeSignal = Literal["class_cosine", "max_probability"]
Array = npt.NDArray[np.float32]


class Calibration(BaseModel):
    """``calibration/<model>.json``: plain numbers, no pickles."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    sha256: str | None = Field(description="of the model file it was fitted for")
    temperature: float = Field(gt=0.0, le=100.0)
    probability_floor: float = Field(default=1 / 512, gt=0.0, lt=1.0)
    scope_signal: ScopeSignal
    scope_threshold: float
    acceptance: float = Field(description="share of the fitting photos at or above the threshold")
    fitted_on: str = Field(description="the labelled photos it was fitted on")
    photos: int = Field(description="photos used for the threshold")
    photos_in_model: int = Field(description="of them, photos whose species the model has (temperature)")
    figures: dict[str, float] = Field(default_factory=dict, description="what the fit measured")


def load_calibration(path: Path, sha256: str | None) -> Calibration | None:
    """None (logged) when the file is absent, unreadable or fitted for other weights."""
    try:
        calibration = Calibration.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        log.warning("calibration %s missing: uncalibrated (python -m app calibrate)", path)
        return None
    except (OSError, ValueError, ValidationError) as exc:
        log.warning("calibration %s unreadable (%s): uncalibrated", path, exc)
        return None
    if sha256 is not None and calibration.sha256 is not None and calibration.sha256 != sha256:
        log.warning("calibration %s was fitted for other weights (sha256): uncalibrated", path)
        return None
    return calibration


def calibrate(probabilities: Array, temperature: float, floor: float) -> Array:
    """Temperature scaling on log-probabilities, rows renormalised (works on [C] or [N, C])."""
    logits = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), floor)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True), dtype=np.float32)


@dataclass(frozen=True)
class Assessment:
    """One photo through one model."""

    probabilities: Array  # [C] calibrated (as the model gives them without a calibration)
    top: int  # the best species (never the background class)
    scope: float  # the scope signal, for ``top``
    background: float | None  # the background class's probability (uncalibrated)
    raw: Array  # [C] the model's own probabilities
    features: Array | None  # the pre-logit features (class_cosine)


class ModelScope:
    def __init__(
        self,
        calibration: Calibration | None,
        weights: ClassWeights | None,
        *,
        background_index: int | None,
    ) -> None:
        self.calibration = calibration
        self.background_index = background_index
        self._weights = weights
        self._norms = (
            np.linalg.norm(weights.rows.astype(np.float32) - np.float32(weights.zero_point), axis=1)
            if weights is not None
            else None
        )
        signal: ScopeSignal = calibration.scope_signal if calibration is not None else "max_probability"
        if signal == "class_cosine" and weights is None:
            log.warning("calibration asks for class_cosine but the model has no class weights")
            signal, calibration = "max_probability", None
            self.calibration = None
        self.signal: ScopeSignal = signal
        # None: uncalibrated, and the caller's RANKING_MIN_SCORE is the threshold on max_probability.
        self.threshold = calibration.scope_threshold if calibration is not None else None

    @property
    def weights(self) -> ClassWeights | None:
        return self._weights

    def assess(self, probabilities: Array, features: Array | None, calibrated: bool = True) -> Assessment:
        """One photo through the model. ``calibrated=False``: the model's own output as it is
        (what the classifier endpoints answer with), its scope signal the best species'
        probability: nothing is calibrated and no features are needed."""
        species = np.array(probabilities, dtype=np.float32)
        background = None
        if self.background_index is not None:
            background = float(species[self.background_index])
            species[self.background_index] = -1.0
        top = int(np.argmax(species))
        raw = np.asarray(probabilities, dtype=np.float32)
        if not calibrated:
            return Assessment(raw, top, float(raw[top]), background, raw, features)
        calibrated_p = self.calibrated(raw)
        if self.signal == "class_cosine" and features is None:
            raise ValueError("class_cosine needs the photo's features")
        assessment = Assessment(calibrated_p, top, 0.0, background, raw, features)
        return replace(assessment, scope=self.scope_for(assessment, top))

    def calibrated(self, probabilities: Array) -> Array:
        """The model's probabilities made honest by its temperature (unchanged without one)."""
        if self.calibration is None:
            return np.asarray(probabilities, dtype=np.float32)
        return calibrate(probabilities, self.calibration.temperature, self.calibration.probability_floor)

    def scope_for(self, assessment: Assessment, species: int) -> float:
        """The photo's scope signal for ``species`` (its own top one, or an observation's)."""
        if self.signal == "class_cosine":
            assert assessment.features is not None
            return self.class_cosine(assessment.features, species)
        return float(assessment.raw[species])

    def class_cosine(self, features: Array, top: int) -> float:
        assert self._weights is not None and self._norms is not None
        row = self._weights.rows[top].astype(np.float32) - np.float32(self._weights.zero_point)
        denominator = float(self._norms[top]) * float(np.linalg.norm(features))
        return float(row @ features) / denominator if denominator > 0 else 0.0
