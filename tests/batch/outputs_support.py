"""For the Camtrap DP and Darwin Core output tests: answers shaped as POST /v1/identify's (named,
rolled up, unknown, blank), outcomes built from them, and a Camtrap DP check that runs offline
against the standard's own 1.0.2 schemas."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.batch.collection import Observation, Outcome, PhotoRef

STANDARD = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2"
PROFILE = f"{STANDARD}/camtrap-dp-profile.json"
# What the profile refers to by address; offline, stand-ins from frictionless (its own Data
# Package rules, which frictionless checks anyway, and the GeoJSON schema it ships).
DATA_PACKAGE = "https://specs.frictionlessdata.io/schemas/data-package.json"
GEOJSON = "http://json.schemastore.org/geojson.json"
ANSWERED_AT = "2024-06-01T12:00:00Z"
MODELS = {"aiy_birds_v1": "3", "aiy_insects_v1": "2", "aiy_plants_v1": "1"}

# --- answers ---------------------------------------------------------------------------------


def gbif(
    key: int, name: str, rank: str = "SPECIES", lineage: Sequence[str] = (), **extra: Any
) -> dict[str, Any]:
    """A GBIF backbone taxon as a linked label map gives it; ``lineage``: kingdom to genus."""
    ranks = ("kingdom", "phylum", "class", "order", "family", "genus")
    taxonomy: dict[str, Any] = {
        "usageKey": key,
        "canonicalName": name,
        "scientificName": name,
        "rank": rank,
        "status": "ACCEPTED",
    }
    for position, (rank_name, value) in enumerate(zip(ranks, lineage, strict=False)):
        taxonomy[rank_name] = value
        taxonomy[f"{rank_name}Key"] = key * 10 + position
    taxonomy.update(extra)
    return taxonomy


def result(
    name: str,
    score: float,
    *,
    rank: int = 1,
    common: str | None = None,
    model: str = "aiy_birds_v1",
    taxonomy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "rank": rank,
        "model": model,
        "group": "bird",
        "index": 923,
        "scientific_name": name,
        "common_name": common,
        "score": score,
        "vision_score": score,
        "geo_score": None,
        "combined_score": score,
        "geo_weight": None,
        "geo_records": None,
        "per_photo": [round(score, 6)],
        "taxonomy": taxonomy,
    }


def place(
    lat: float | None, lon: float | None, date: str | None, source: str | None, problems: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "lat": lat,
        "lon": lon,
        "date": date,
        "source": source,
        "date_source": None,
        "problems": list(problems),
    }


def answer(
    results: Sequence[dict[str, Any]],
    *,
    reason: str | None = None,
    model: str | None = "aiy_birds_v1",
    rollup: dict[str, Any] | None = None,
    where: dict[str, Any] | None = None,
    photos: int = 1,
    fmt: str = "JPEG",
) -> dict[str, Any]:
    """The /v1/identify JSON, as in its documented example, with ``place``."""
    return {
        "results": list(results),
        "no_match": reason is not None,
        "no_match_reason": reason,
        "group": "bird" if model else None,
        "model": model,
        "why": "aiy_birds_v1 fits best (class_cosine 0.482 >= its threshold 0.272)",
        "models": [
            {
                "model": "aiy_birds_v1",
                "group": "bird",
                "signal": "class_cosine",
                "scope": 0.481618,
                "threshold": 0.271907,
                "accepted": model is not None,
                "background": 0.0,
                "best": results[0]["scientific_name"] if results else "Ara macao",
                "best_score": results[0]["score"] if results else 0.2,
            }
        ],
        "rollup": rollup,
        "geo": {"status": "not_linked", "reason": None, "cell": None, "cell_records": None, "cache": None},
        "photos": [{"source": "file", "format": fmt, "width": 512, "height": 929, "bytes": 596977}] * photos,
        "timings_ms": {
            "fetch_ms": None,
            "decode_ms": 47.7,
            "infer_ms": 38.7,
            "search_ms": None,
            "total_ms": 88.5,
        },
        "index": None,
        "filters": None,
        "thresholds": {"min_score": 0.1, "rollup_threshold": 0.8},
        "place": where if where is not None else place(None, None, None, None),
    }


def named(
    name: str = "Ara macao",
    score: float = 0.9634669423103333,
    *,
    common: str | None = "Scarlet Macaw",
    taxonomy: dict[str, Any] | None = None,
    where: dict[str, Any] | None = None,
    photos: int = 1,
    model: str = "aiy_birds_v1",
    fmt: str = "JPEG",
) -> dict[str, Any]:
    """A species named: the example's Scarlet Macaw by default."""
    top = result(name, score, common=common, taxonomy=taxonomy, model=model)
    second = result(
        "Platycercus elegans", 0.013915423303842545, rank=2, common="Crimson Rosella", model=model
    )
    return answer([top, second], model=model, where=where, photos=photos, fmt=fmt)


def rolled_up(
    name: str,
    rank: str,
    score: float,
    *,
    key: int | None = None,
    guesses: Sequence[dict[str, Any]] = (),
    where: dict[str, Any] | None = None,
    reason: str = "low_confidence",
) -> dict[str, Any]:
    """No species sure enough, but the species under ``name`` together are."""
    rollup = {"rank": rank, "name": name, "usageKey": key, "score": score, "reason": None}
    return answer(guesses, reason=reason, rollup=rollup, where=where)


def unknown(reason: str = "low_confidence", *, where: dict[str, Any] | None = None) -> dict[str, Any]:
    guesses = [result("Ara macao", 0.083, common="Scarlet Macaw")] if reason == "low_confidence" else []
    return answer(
        guesses, reason=reason, model=None if reason == "out_of_scope" else "aiy_birds_v1", where=where
    )


def blank(*, where: dict[str, Any] | None = None) -> dict[str, Any]:
    return answer([], reason="not_an_organism", model=None, where=where)


def outcome(
    observation: Observation,
    answered: dict[str, Any] | None,
    *,
    at: str = ANSWERED_AT,
    error: str | None = None,
) -> Outcome:
    if answered is None:
        return Outcome(observation, None, error or "photo.jpg: no such file", at)
    return Outcome(observation, answered, None, at)


def photo(given: str, root: Path | None = None, **extra: Any) -> PhotoRef:
    location = given if given.startswith(("http://", "https://")) or root is None else str(root / given)
    return PhotoRef(location=location, given=given, **extra)


# --- an offline Camtrap DP check -------------------------------------------------------------


@contextmanager
def offline() -> Iterator[None]:
    """Any attempt to open a network connection fails the test: the checks must not fetch the
    schemas the package names by address."""
    import socket

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    saved = socket.socket.connect, socket.create_connection
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection = saved  # type: ignore[method-assign]


def profile_errors(descriptor: dict[str, Any], schemas: Path) -> list[str]:
    """The descriptor against ``camtrap-dp-profile.json`` (JSON Schema, draft 4), the profile's
    external references resolved from local stand-ins."""
    import frictionless
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT4

    profile = json.loads((schemas / "camtrap-dp-profile.json").read_text(encoding="utf-8"))
    geojson = Path(frictionless.__file__).parent / "assets" / "profiles" / "geojson.json"
    registry: Registry[Any] = Registry().with_resources(
        [
            (DATA_PACKAGE, DRAFT4.create_resource(frictionless.Package.metadata_profile)),
            (GEOJSON, DRAFT4.create_resource(json.loads(geojson.read_text(encoding="utf-8")))),
        ]
    )
    validator = jsonschema.Draft4Validator(
        profile, registry=registry, format_checker=jsonschema.FormatChecker()
    )
    errors = [
        f"profile: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(descriptor)
    ]
    if descriptor.get("profile") != PROFILE:
        errors.append(f"profile: names {descriptor.get('profile')!r}, not {PROFILE}")
    return errors


def camtrap_dp_errors(package_dir: Path, schemas: Path, work: Path) -> list[str]:
    """Every way the package at ``package_dir`` breaks Camtrap DP 1.0.2 (none: it is valid):
    the profile (``profile_errors``), then frictionless over every table with the standard's
    table schemas (types, constraints, headers, primary and foreign keys). A copy in ``work``
    names the local schema files in place of their addresses."""
    descriptor = json.loads((package_dir / "datapackage.json").read_text(encoding="utf-8"))
    errors = profile_errors(descriptor, schemas)
    copied = work / "validated"
    shutil.rmtree(copied, ignore_errors=True)
    shutil.copytree(package_dir, copied)
    local = copy.deepcopy(descriptor)
    local.pop("profile", None)  # checked above; frictionless would fetch it
    for resource in local["resources"]:
        address = resource.get("schema")
        if isinstance(address, str) and address.startswith(f"{STANDARD}/"):
            name = address.rsplit("/", 1)[1]
            shutil.copy(schemas / name, copied / f"_schema-{name}")
            resource["schema"] = f"_schema-{name}"
        elif isinstance(address, str) and "://" in address:
            errors.append(f"{resource['name']}: schema {address} is not a Camtrap DP 1.0.2 table schema")
    (copied / "datapackage.json").write_text(json.dumps(local), encoding="utf-8")
    import frictionless

    with offline():
        report = frictionless.validate(str(copied / "datapackage.json"))
    tables = {task.name for task in report.tasks}
    missing = {"deployments", "media", "observations"} - tables
    errors += [f"{name}: not validated" for name in sorted(missing)]
    errors += [
        f"{task.name}: {error.type}: {error.message}" for task in report.tasks for error in task.errors
    ]
    errors += [f"package: {error.type}: {error.message}" for error in report.errors]
    return errors


def table(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
