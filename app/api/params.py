"""Query parameters more than one route takes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

TopK = Annotated[
    int | None, Query(ge=1, le=100, description="how many species to return (default 5, at most 100)")
]
