"""GET /query_gbif: a name looked up in the GBIF backbone (cached, retried, bounded)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import GbifDep
from app.api.schemas import GbifMatch, error_responses
from app.errors import NotFound

router = APIRouter(tags=["gbif"])

Rank = Literal[
    "KINGDOM", "PHYLUM", "CLASS", "ORDER", "FAMILY", "GENUS", "SPECIES", "SUBSPECIES", "VARIETY", "FORM"
]
_FLAGS = {
    "FUZZY": "GBIF matched a differently spelled name",
    "HIGHERRANK": "GBIF only matched a higher taxon than the name asked for",
}


class NoGbifMatch(NotFound):
    code = "no_match"


async def query_gbif(
    response: Response,
    gbif: GbifDep,
    name: Annotated[str, Query(min_length=1, max_length=200, description="a scientific (or common) name")],
    kingdom: Annotated[str | None, Query(max_length=40, pattern=r"^[A-Za-z]+$")] = None,
    rank: Annotated[Rank | None, Query(description="the rank the name is expected to have")] = None,
    strict: Annotated[bool, Query(description="no fuzzy matching")] = False,
    verbose: Annotated[bool, Query(description="include GBIF's alternatives")] = False,
) -> GbifMatch:
    answer = await gbif.match(name.strip(), kingdom=kingdom, rank=rank, strict=strict, verbose=verbose)
    response.headers["X-Cache"] = answer.cache
    payload = answer.payload
    match_type = payload.get("matchType")
    if match_type == "NONE" or "usageKey" not in payload:
        # GBIF answers a miss with confidence 100: it is sure there is no match.
        raise NoGbifMatch(
            f"GBIF has no match for {name!r}" + (f": {payload['note']}" if payload.get("note") else ""),
            detail={"matchType": match_type, "confidence": payload.get("confidence"), "cache": answer.cache},
        )
    match = GbifMatch.model_validate(payload)
    reason = _FLAGS.get(match.matchType)
    return match.model_copy(
        update={"flagged": reason is not None, "flag_reason": reason, "cache": answer.cache}
    )


for _path, _schema in (("/query_gbif", True), ("/query_gbif/", False)):  # the seed's path, too
    router.add_api_route(
        _path,
        query_gbif,
        methods=["GET"],
        response_model=GbifMatch,
        responses=error_responses(400, 404, 502, 504),
        include_in_schema=_schema,
        summary="Look a name up in the GBIF backbone taxonomy",
        description=(
            "Asks GBIF's species match API (answers are cached; see GBIF_* settings). `matchType` NONE "
            "is a 404; FUZZY and HIGHERRANK are returned with `flagged: true`. The `X-Cache` header says "
            "hit, miss or stale (GBIF failed and an expired answer was served)."
        ),
    )
