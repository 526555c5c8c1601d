"""``camtrap-dp/``: the collection's answers as a Camera Trap Data Package (Camtrap DP 1.0.2):
``datapackage.json`` with ``deployments``, ``media`` and ``observations`` tables.

Two cases:

- **the source was a Camtrap DP package** (``package``: its ``datapackage.json``): a copy of it,
  every resource file under the path its resource names, with one *machine* observation per
  answered observation added at the end of ``observations.csv``. Every row already there (the
  people's observations, earlier machine ones) stays byte for byte; so do ``deployments.csv`` and
  ``media.csv``. The descriptor keeps all of its metadata; ``created`` becomes the run's (its
  newest answer's time), the taxa named are added to ``taxonomic`` (existing entries kept, none
  twice) and ``project.observationLevel`` gains the levels written.
- **a folder or a CSV**: a new package. One deployment per distinct place (latitude and
  longitude rounded to 6 decimals, about 0.1 m), ``deploymentID`` a short hash of them,
  starting and ending with its media's first and last timestamps; one media row per photo
  (``mediaID``: the source's, else a short hash of the photo's path or address as the source
  gave it, so the same photo keeps its id whatever the grouping; ``filePath`` as the source gave
  it, relative to the source, or a ``file://`` address where the schema refuses that form: an
  absolute path, ``..``); ``captureMethod`` ``activityDetection``, the closer of the two for a
  photo someone took on seeing the organism; ``filePublic`` false: nothing says the photos are
  published).

Left out of a new package, with no media or observation rows (``left_out`` lists them, the
log counts them), because 1.0.2 requires what they lack and a made-up value would be data:

- an observation without coordinates: ``deployments.latitude``/``longitude`` are required and
  every media row needs a deployment (no 0, 0 "unknown" deployment: that is a real place);
- one without any time: ``media.timestamp`` is required. A date alone (a CSV's date, the
  photos' EXIF date) is written as that day's 00:00:00Z and said in ``mediaComments``.

The photos themselves are never copied: a relative ``filePath`` is relative to the source (the
input package's folder, the folder or CSV), as it was there. Copy them beside
``datapackage.json`` to make the package whole.

Machine observations (both cases): ``observationID`` ``<observation id>:machine`` (``:machine:2``,
``:machine:3``... where a rerun's rows already hold it); an observation of one photo is
``observationLevel`` ``media`` with its ``mediaID``, an event (``--group-by event``) or any
observation of several photos is ``event``, without ``mediaID``, with ``eventID`` (the event's,
else the observation id) and ``eventStart``/``eventEnd`` (required: the event's, else the
first and last media timestamps, in UTC). ``observationType``:

- ``animal``: the answer names a species, or (no species sure enough) a higher taxon whose
  species together reach the rollup threshold (``scientificName`` that taxon, at its rank, like
  the standard's own "Aves"); 1.0.2 has no other type for an organism (a plant is ``animal`` too,
  as tdwg/camtrap-dp#346 discusses) except ``human`` for *Homo sapiens*;
- ``blank``: ``not_an_organism``;
- ``unknown``: ``out_of_scope``, and ``low_confidence``/``filtered_out`` without a rollup (no
  ``scientificName``; the reason and the best guess in ``observationComments``);
- a failed observation (no answer) gets **no** row: nothing classified it (and in a new package
  no media rows either: its photo may not even exist; an input package's media stay).

``classificationMethod`` machine, ``classifiedBy`` the model and its version (every model asked,
when none accepted the photos), ``classificationTimestamp`` when it was answered,
``classificationProbability`` the species' (or rollup's) score, rounded to 6 places.

The package is built in a temporary folder beside ``out`` and renamed into place: a crash leaves
the previous package (or none), never half of one. Only the standard library.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import mimetypes
import os
import posixpath
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from app.batch.collection import Observation, Outcome, PhotoRef
from app.batch.outputs.answer_reading import (
    SOFTWARE,
    NamedTaxon,
    classified_by,
    named_taxon,
    plain_number,
    where,
)

log = logging.getLogger("app.batch")

VERSION = "1.0.2"
STANDARD = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{VERSION}"
PROFILE = f"{STANDARD}/camtrap-dp-profile.json"
TABLES = ("deployments", "media", "observations")

DEPLOYMENT_FIELDS = [
    "deploymentID", "locationID", "locationName", "latitude", "longitude", "coordinateUncertainty",
    "deploymentStart", "deploymentEnd", "setupBy", "cameraID", "cameraModel", "cameraDelay", "cameraHeight",
    "cameraDepth", "cameraTilt", "cameraHeading", "detectionDistance", "timestampIssues", "baitUse",
    "featureType", "habitat", "deploymentGroups", "deploymentTags", "deploymentComments",
]  # fmt: skip
MEDIA_FIELDS = [
    "mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic", "fileName",
    "fileMediatype", "exifData", "favorite", "mediaComments",
]  # fmt: skip
OBSERVATION_FIELDS = [
    "observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd", "observationLevel",
    "observationType", "cameraSetupType", "scientificName", "count", "lifeStage", "sex", "behavior",
    "individualID", "individualPositionRadius", "individualPositionAngle", "individualSpeed", "bboxX",
    "bboxY", "bboxWidth", "bboxHeight", "classificationMethod", "classifiedBy", "classificationTimestamp",
    "classificationProbability", "observationTags", "observationComments",
]  # fmt: skip
FIELDS = {"deployments": DEPLOYMENT_FIELDS, "media": MEDIA_FIELDS, "observations": OBSERVATION_FIELDS}

# The profile's taxonomic[].taxonRank vocabulary; a rank outside it is left out, not guessed.
TAXON_RANKS = frozenset({"kingdom", "phylum", "class", "order", "family", "genus", "species", "subspecies"})
# media.filePath's pattern in the 1.0.2 schema: no leading ".", "/" or "~", no "..".
FILE_PATH = re.compile(r"^(?=^[^./~])(^((?!\.{2}).)*$).*$")
# Pillow's format names (the answer's photos[].format), which know what a file holds better than
# its name does.
FORMATS = {
    "JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
    "GIF": "image/gif", "TIFF": "image/tiff", "BMP": "image/bmp", "HEIF": "image/heif", "AVIF": "image/avif",
}  # fmt: skip
SUFFIXES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".heic": "image/heic", ".heif": "image/heif"}
PLACE_SOURCES = {
    "photo": "the photos' EXIF GPS",
    "row": "the collection's CSV",
    "deployment": "the source package's deployment",
    "request": "the command's --lat/--lon",
}


class CamtrapDpError(ValueError):
    """The package cannot be written: an input package it cannot copy, or nothing to place."""


@dataclass(frozen=True, slots=True)
class LeftOut:
    observation: str
    reason: str  # "failed", or what Camtrap DP needs that the observation lacks


@dataclass
class _Plan:
    deployments: dict[str, dict[str, str]] = field(default_factory=dict)  # new package only
    media: dict[str, dict[str, str]] = field(default_factory=dict)  # new package only
    observations: list[dict[str, str]] = field(default_factory=list)
    taxa: list[NamedTaxon] = field(default_factory=list)
    levels: set[str] = field(default_factory=set)
    left_out: list[LeftOut] = field(default_factory=list)


# --- entry points ----------------------------------------------------------------------------


def write_camtrap_dp(
    outcomes: Sequence[Outcome],
    out: Path,
    *,
    package: Path | None,
    models: Mapping[str, str],
    created: str,
) -> Path:
    """Write the package to the folder ``out`` (replacing it whole); see the module docstring."""
    if package is not None:
        source = _InputPackage.read(package)
        plan = _package_plan(outcomes, source, models)
        _replace_dir(out, lambda tmp: _write_extended(tmp, source, plan, created))
    else:
        plan = _new_plan(outcomes, models)
        if not plan.deployments:
            raise CamtrapDpError(
                "no observation has coordinates and a date: a Camtrap DP package needs both "
                "(give --lat/--lon and --date, or lat/lon/date columns in the CSV)"
            )
        _replace_dir(out, lambda tmp: _write_new(tmp, plan, created))
    if plan.left_out:
        counts = Counter(item.reason for item in plan.left_out)
        log.warning(
            "camtrap-dp: %d observations not in the package (%s)",
            len(plan.left_out),
            "; ".join(f"{reason}: {n}" for reason, n in counts.most_common()),
        )
    return out


def left_out(outcomes: Sequence[Outcome], *, package: Path | None) -> list[LeftOut]:
    """The observations ``write_camtrap_dp`` writes no observation row for, and why."""
    if package is not None:
        return _package_plan(outcomes, _InputPackage.read(package), {}).left_out
    return _new_plan(outcomes, {}).left_out


# --- machine observations --------------------------------------------------------------------


def _observation_type(answer: Mapping[str, Any], taxon: NamedTaxon | None) -> str:
    if answer.get("no_match_reason") == "not_an_organism":
        return "blank"
    if taxon is not None:
        return "human" if taxon.scientific_name == "Homo sapiens" else "animal"
    return "unknown"


def _comments(answer: Mapping[str, Any], taxon: NamedTaxon | None) -> str:
    reason = answer.get("no_match_reason")
    if taxon is not None and taxon.rollup:
        return (
            f"no species reached the minimum score ({reason}); the species of this "
            f"{taxon.rank or 'taxon'} hold probability {plain_number(taxon.probability)} together"
        )
    if taxon is not None or not reason:
        return ""
    results = answer.get("results") or []
    guess = results[0] if results and isinstance(results[0], Mapping) else None
    if guess is not None and guess.get("scientific_name") and isinstance(guess.get("score"), int | float):
        return f"no match ({reason}); best guess {guess['scientific_name']} {plain_number(guess['score'])}"
    return f"no match ({reason})"


def _machine_row(
    outcome: Outcome,
    models: Mapping[str, str],
    taken: set[str],
    *,
    deployment_id: str,
    media_id: str | None,
    event_id: str | None,
    start: str,
    end: str,
) -> tuple[dict[str, str], NamedTaxon | None]:
    answer = outcome.answer or {}
    taxon = named_taxon(answer)
    model = taxon.model if taxon is not None else (str(answer["model"]) if answer.get("model") else None)
    observation_id = f"{outcome.observation.id}:machine"
    n = 1
    while observation_id in taken:
        n += 1
        observation_id = f"{outcome.observation.id}:machine:{n}"
    taken.add(observation_id)
    row = {
        "observationID": observation_id,
        "deploymentID": deployment_id,
        "mediaID": media_id or "",
        "eventID": event_id or "",
        "eventStart": start,
        "eventEnd": end,
        "observationLevel": "media" if media_id else "event",
        "observationType": _observation_type(answer, taxon),
        "scientificName": taxon.scientific_name if taxon is not None else "",
        "classificationMethod": "machine",
        "classifiedBy": classified_by(model, models),
        "classificationTimestamp": _utc(outcome.answered_at) or "",
        "classificationProbability": plain_number(taxon.probability) if taxon is not None else "",
        "observationComments": _comments(answer, taxon),
    }
    return row, taxon


def _add(plan: _Plan, row: dict[str, str], taxon: NamedTaxon | None) -> None:
    plan.observations.append(row)
    plan.levels.add(row["observationLevel"])
    if taxon is not None:
        plan.taxa.append(taxon)


def _level(observation: Observation, stamps: list[str]) -> tuple[str | None, str, str]:
    """``(event id, start, end)``: no event id for a one-photo media observation."""
    if observation.event_id is None and len(observation.photos) == 1:
        return None, stamps[0], stamps[0]
    start = _utc(observation.event_start) or min(stamps)
    end = _utc(observation.event_end) or max(stamps)
    return observation.event_id or observation.id, start, max(start, end)


# --- an input package, extended --------------------------------------------------------------


@dataclass
class _InputPackage:
    descriptor_path: Path
    descriptor: dict[str, Any]
    media: dict[str, tuple[str, str]]  # mediaID -> (deploymentID, timestamp)
    observation_ids: set[str]

    @property
    def root(self) -> Path:
        return self.descriptor_path.parent

    def resource(self, name: str) -> dict[str, Any] | None:
        for resource in self.descriptor.get("resources") or []:
            if isinstance(resource, dict) and resource.get("name") == name:
                return resource
        return None

    @classmethod
    def read(cls, descriptor_path: Path) -> _InputPackage:
        try:
            descriptor = json.loads(descriptor_path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CamtrapDpError(
                f"{descriptor_path}: not a readable Data Package descriptor ({exc})"
            ) from None
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("resources"), list):
            raise CamtrapDpError(f"{descriptor_path}: a Data Package descriptor needs a resources list")
        found = cls(descriptor_path, descriptor, {}, set())
        media = found.resource("media")
        if media is None:
            raise CamtrapDpError(f"{descriptor_path}: no media resource")
        for row in _read_rows(found.root, media):
            found.media.setdefault(
                row.get("mediaID", ""), (row.get("deploymentID", ""), row.get("timestamp", ""))
            )
        observations = found.resource("observations")
        if observations is not None:
            found.observation_ids = {
                row.get("observationID", "") for row in _read_rows(found.root, observations)
            }
        return found


def _package_plan(outcomes: Sequence[Outcome], source: _InputPackage, models: Mapping[str, str]) -> _Plan:
    plan = _Plan()
    taken = set(source.observation_ids)
    for outcome in outcomes:
        observation = outcome.observation
        if outcome.answer is None:
            plan.left_out.append(LeftOut(observation.id, "failed"))
            continue
        listed = [source.media.get(photo.media_id or "") for photo in observation.photos]
        if any(entry is None for entry in listed):
            plan.left_out.append(LeftOut(observation.id, "a photo is not in the package's media table"))
            continue
        media = [entry for entry in listed if entry is not None]
        stamps = [
            _utc(photo.timestamp) or _utc(entry[1])
            for photo, entry in zip(observation.photos, media, strict=True)
        ]
        known = [stamp for stamp in stamps if stamp is not None]
        if len(known) != len(stamps):
            plan.left_out.append(LeftOut(observation.id, "a media timestamp is not ISO 8601"))
            continue
        event_id, start, end = _level(observation, known)
        # The media table's deployment, not the observation's: the foreign key checks that one.
        row, taxon = _machine_row(
            outcome,
            models,
            taken,
            deployment_id=media[0][0],
            media_id=None if event_id else observation.photos[0].media_id,
            event_id=event_id,
            start=start,
            end=end,
        )
        _add(plan, row, taxon)
    return plan


def _write_extended(tmp: Path, source: _InputPackage, plan: _Plan, created: str) -> None:
    descriptor = json.loads(json.dumps(source.descriptor))  # a deep copy, to change freely
    for reference in _local_files(source.root, descriptor):
        _copy(source.root, reference, tmp)
    observations = next(
        (r for r in descriptor["resources"] if isinstance(r, dict) and r.get("name") == "observations"), None
    )
    if observations is None:
        observations = _resource("observations")
        descriptor["resources"].append(observations)
        _write_table(tmp / "observations.csv", OBSERVATION_FIELDS, plan.observations)
    else:
        _append_rows(tmp, observations, plan.observations)
    descriptor["created"] = created
    descriptor["taxonomic"] = _taxonomic(descriptor.get("taxonomic"), plan.taxa)
    project = descriptor.get("project")
    if isinstance(project, dict) and isinstance(project.get("observationLevel"), list):
        levels = project["observationLevel"]
        levels.extend(level for level in ("media", "event") if level in plan.levels and level not in levels)
    _write_bytes(tmp / "datapackage.json", _json(descriptor))


def _local_files(root: Path, descriptor: Mapping[str, Any]) -> Iterator[str]:
    """The files the descriptor names by a relative path: every resource's data (which must be
    there), and a schema, dialect or profile kept in a file beside it (one named by address, or
    a built-in profile name, stays as it is)."""
    for resource in descriptor.get("resources") or []:
        if not isinstance(resource, dict):
            continue
        path = resource.get("path")
        for chunk in path if isinstance(path, list) else [path]:
            if isinstance(chunk, str) and chunk and "://" not in chunk:
                yield chunk
    optional: list[Any] = [descriptor.get("profile")]
    for resource in descriptor.get("resources") or []:
        if isinstance(resource, dict):
            optional += [resource.get("schema"), resource.get("dialect")]
    for reference in optional:
        if isinstance(reference, str) and "://" not in reference:
            relative = PurePosixPath(reference)
            if not relative.is_absolute() and ".." not in relative.parts and (root / relative).is_file():
                yield reference


def _safe(reference: str) -> PurePosixPath:
    relative = PurePosixPath(reference)
    if relative.is_absolute() or ".." in relative.parts:
        raise CamtrapDpError(f"the package names {reference}, outside its folder: it cannot be copied")
    return relative


def _copy(root: Path, reference: str, tmp: Path) -> None:
    relative = _safe(reference)
    source, target = root / relative, tmp / relative
    if not source.is_file():
        raise CamtrapDpError(f"the package names {reference}, which is not in {root}")
    if target.exists():  # named twice (two resources sharing a schema file)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)
        dst.flush()
        os.fsync(dst.fileno())


def _chunks(resource: Mapping[str, Any]) -> list[str]:
    path = resource.get("path")
    chunks = [path] if isinstance(path, str) else path
    if not isinstance(chunks, list) or not chunks or not all(isinstance(c, str) for c in chunks):
        raise CamtrapDpError(f"the {resource.get('name')} resource names no file")
    if any("://" in chunk for chunk in chunks):
        raise CamtrapDpError(f"the {resource.get('name')} table is on the web; download the package first")
    return chunks


def _dialect(resource: Mapping[str, Any]) -> tuple[str, str]:
    """``(delimiter, encoding)`` of a resource's CSV."""
    dialect = resource.get("dialect")
    delimiter = dialect.get("delimiter", ",") if isinstance(dialect, dict) else ","
    encoding = str(resource.get("encoding") or "utf-8")
    return (delimiter if isinstance(delimiter, str) and len(delimiter) == 1 else ","), encoding


def _utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")


def _read_rows(root: Path, resource: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    delimiter, encoding = _dialect(resource)
    for chunk in _chunks(resource):
        path = root / _safe(chunk)
        try:
            with path.open(newline="", encoding="utf-8-sig" if _utf8(encoding) else encoding) as fh:
                yield from csv.DictReader(fh, delimiter=delimiter)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CamtrapDpError(f"{path}: not a readable CSV ({exc})") from None


def _append_rows(tmp: Path, resource: Mapping[str, Any], rows: list[dict[str, str]]) -> None:
    """Append ``rows`` to the table's last file, in its own columns, delimiter, encoding and line
    ending; the bytes already there are not rewritten."""
    if not rows:
        return
    delimiter, encoding = _dialect(resource)
    target = tmp / _safe(_chunks(resource)[-1])
    data = target.read_bytes()
    first_line = data.split(b"\n", 1)[0]
    ending = "\r\n" if first_line.endswith(b"\r") else "\n"
    header_encoding = "utf-8-sig" if _utf8(encoding) else encoding
    header_text = first_line.rstrip(b"\r").decode(header_encoding)
    header = next(csv.reader([header_text], delimiter=delimiter), [])
    if not header:  # an empty file: our header, then the rows
        header = OBSERVATION_FIELDS
        data = b""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=ending)
    if not data:
        writer.writerow(header)
    writer.writerows([[row.get(column, "") for column in header] for row in rows])
    added = buffer.getvalue().encode("utf-8" if _utf8(encoding) else encoding)
    lead = ending.encode() if data and not data.endswith(b"\n") else b""
    _write_bytes(target, data + lead + added)


# --- a new package ---------------------------------------------------------------------------


def _new_plan(outcomes: Sequence[Outcome], models: Mapping[str, str]) -> _Plan:
    plan = _Plan()
    taken: set[str] = set()
    sources: dict[str, set[str]] = {}
    for outcome in outcomes:
        observation = outcome.observation
        if outcome.answer is None:
            plan.left_out.append(LeftOut(observation.id, "failed"))
            continue
        place = where(outcome)
        if place.lat is None or place.lon is None:
            plan.left_out.append(LeftOut(observation.id, "no coordinates (a deployment needs them)"))
            continue
        day = _utc(place.date)
        stamps = [_utc(photo.timestamp) or day for photo in observation.photos]
        known = [stamp for stamp in stamps if stamp is not None]
        if len(known) != len(stamps):
            plan.left_out.append(LeftOut(observation.id, "no date or time (media need a timestamp)"))
            continue
        lat, lon = round(place.lat, 6), round(place.lon, 6)
        deployment_id = hashlib.sha1(f"{plain_number(lat)},{plain_number(lon)}".encode()).hexdigest()[:8]
        deployment = plan.deployments.setdefault(
            deployment_id,
            {
                "deploymentID": deployment_id,
                "latitude": plain_number(lat),
                "longitude": plain_number(lon),
                "deploymentStart": known[0],
                "deploymentEnd": known[0],
            },
        )
        deployment["deploymentStart"] = min(deployment["deploymentStart"], *known)
        deployment["deploymentEnd"] = max(deployment["deploymentEnd"], *known)
        sources.setdefault(deployment_id, set()).add(PLACE_SOURCES.get(place.source or "", "the answer"))
        photo_formats = [p for p in outcome.answer.get("photos") or [] if isinstance(p, Mapping)]
        media_ids = []
        for index, (photo, stamp) in enumerate(zip(observation.photos, known, strict=True)):
            media_id = photo.media_id or hashlib.sha1(photo.given.encode()).hexdigest()[:12]
            media_ids.append(media_id)
            decoded = photo_formats[index].get("format") if index < len(photo_formats) else None
            plan.media.setdefault(
                media_id,
                {
                    "mediaID": media_id,
                    "deploymentID": deployment_id,
                    "captureMethod": "activityDetection",
                    "timestamp": stamp,
                    "filePath": _file_path(photo),
                    "filePublic": "false",
                    "fileName": PurePosixPath(photo.given.rstrip("/")).name,
                    "fileMediatype": _mediatype(photo, decoded),
                    "mediaComments": ""
                    if _utc(photo.timestamp)
                    else "timestamp: the date only (00:00:00Z); the time is not known",
                },
            )
        event_id, start, end = _level(observation, known)
        row, taxon = _machine_row(
            outcome,
            models,
            taken,
            deployment_id=deployment_id,
            media_id=None if event_id else media_ids[0],
            event_id=event_id,
            start=start,
            end=end,
        )
        _add(plan, row, taxon)
    for deployment_id, named in sources.items():
        plan.deployments[deployment_id]["deploymentComments"] = "coordinates from " + " and ".join(
            sorted(named)
        )
    return plan


def _file_path(photo: PhotoRef) -> str:
    if photo.is_url:
        return photo.given
    given = posixpath.normpath(photo.given.replace("\\", "/"))
    if FILE_PATH.match(given):
        return given
    return Path(os.path.normpath(Path(photo.location).absolute())).as_uri()


def _mediatype(photo: PhotoRef, decoded: Any) -> str:
    if isinstance(decoded, str) and decoded.upper() in FORMATS:
        return FORMATS[decoded.upper()]
    suffix = PurePosixPath(photo.given.split("?", 1)[0]).suffix.lower()
    guessed = SUFFIXES.get(suffix) or mimetypes.types_map.get(suffix)
    # An image of a kind not named: the schema wants image/..., and "image/*" claims no more.
    return guessed if guessed and guessed.startswith("image/") else "image/*"


def _write_new(tmp: Path, plan: _Plan, created: str) -> None:
    _write_table(tmp / "deployments.csv", DEPLOYMENT_FIELDS, list(plan.deployments.values()))
    _write_table(tmp / "media.csv", MEDIA_FIELDS, list(plan.media.values()))
    _write_table(tmp / "observations.csv", OBSERVATION_FIELDS, plan.observations)
    deployments = list(plan.deployments.values())
    points = [(float(d["latitude"]), float(d["longitude"])) for d in deployments]
    descriptor: dict[str, Any] = {
        "resources": [_resource(name) for name in TABLES],
        "profile": PROFILE,
        "name": "species-id-machine-observations",
        "title": "Machine identifications of a photo collection",
        "created": created,
        "contributors": [{"title": SOFTWARE, "role": "contributor"}],
        "description": (
            f"Observations of {len(plan.media)} photos identified by machine ({SOFTWARE}); "
            "not reviewed by a person. A relative media filePath is relative to the collection's "
            "folder, not to this package."
        ),
        "project": {
            "title": "Machine identification of a photo collection",
            "samplingDesign": "opportunistic",
            "captureMethod": ["activityDetection"],
            "individualAnimals": False,
            "observationLevel": [level for level in ("media", "event") if level in plan.levels] or ["media"],
        },
        "spatial": _spatial(points),
        "temporal": {
            "start": min(d["deploymentStart"] for d in deployments)[:10],
            "end": max(d["deploymentEnd"] for d in deployments)[:10],
        },
        "taxonomic": _taxonomic(None, plan.taxa),
    }
    _write_bytes(tmp / "datapackage.json", _json(descriptor))


def _resource(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "path": f"{name}.csv",
        "profile": "tabular-data-resource",
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
        "schema": f"{STANDARD}/{name}-table-schema.json",
    }


def _spatial(points: list[tuple[float, float]]) -> dict[str, Any]:
    """GeoJSON: the one place, else the box around them all."""
    if len(set(points)) == 1:
        lat, lon = points[0]
        return {"type": "Point", "coordinates": [lon, lat]}
    south, north = min(p[0] for p in points), max(p[0] for p in points)
    west, east = min(p[1] for p in points), max(p[1] for p in points)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


# --- shared ----------------------------------------------------------------------------------


def _taxonomic(existing: Any, taxa: list[NamedTaxon]) -> list[Any]:
    entries: list[Any] = list(existing) if isinstance(existing, list) else []
    named = {e.get("scientificName") for e in entries if isinstance(e, dict)}
    added: dict[str, dict[str, Any]] = {}
    for taxon in taxa:
        if taxon.scientific_name in named or taxon.scientific_name in added:
            continue
        entry: dict[str, Any] = {"scientificName": taxon.scientific_name}
        if taxon.taxon_id:
            entry["taxonID"] = taxon.taxon_id
        if taxon.rank in TAXON_RANKS:
            entry["taxonRank"] = taxon.rank
        entry.update(taxon.higher)
        if taxon.vernacular:
            entry["vernacularNames"] = {"eng": taxon.vernacular}
        added[taxon.scientific_name] = entry
    return entries + [added[name] for name in sorted(added)]


def _utc(text: str | None) -> str | None:
    """An ISO 8601 date or time as the schemas' ``%Y-%m-%dT%H:%M:%S%z``, in UTC (``Z``); whole
    seconds, since the format has no fractions. A time without an offset is read as UTC (as the
    sources read it); a date alone is its 00:00:00. None: not ISO 8601."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_table(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_bytes(path, buffer.getvalue().encode("utf-8"))


def _json(descriptor: Mapping[str, Any]) -> bytes:
    return (json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _replace_dir(out: Path, build: Callable[[Path], None]) -> None:
    """Build the folder under a temporary name beside ``out``, then swap it in: two renames,
    so at any moment ``out`` is the old package, absent, or the new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the package from others who may read DIR
        build(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
