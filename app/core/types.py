"""Shared value types: what a network takes in, and what a class is called."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class InputSpec(BaseModel):
    """What the network expects: RGB pixels resized to ``size`` and mapped linearly from
    0..255 onto ``range`` in ``dtype`` (the AIY TFLite models take raw uint8 0..255;
    TF-Hub image models take float32 0..1)."""

    model_config = ConfigDict(extra="forbid")

    size: tuple[int, int] = Field(default=(224, 224), description="height, width")
    dtype: Literal["uint8", "float32"] = "uint8"
    range: tuple[float, float] = (0.0, 255.0)

    @model_validator(mode="after")
    def _check(self) -> InputSpec:
        if min(self.size) < 1 or max(self.size) > 4096:
            raise ValueError(f"input size {self.size} out of bounds")
        if self.dtype == "uint8" and self.range != (0.0, 255.0):
            raise ValueError("uint8 input takes raw pixels: range must be [0, 255]")
        return self


class Label(BaseModel):
    """A class of a model or of the species index. Frozen: label lists are shared by every
    request that reads them."""

    model_config = ConfigDict(frozen=True)

    scientific_name: str
    common_name: str | None = None
