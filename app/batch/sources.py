"""A collection's source, read into observations before anything is identified.

Three kinds of source, told apart by what SOURCE is:

- a folder of photos (recursive; hidden files and folders are left out). ``group_by="photo"``:
  each photo is one observation, its id the path relative to the folder; ``group_by="folder"``:
  each folder that holds photos directly is one observation (id: its relative path, ``.`` for the
  folder itself), which must then hold 1 to ``MAX_PHOTOS`` photos.
- a CSV (``.csv``) with a ``path`` or ``url`` column and, optionally, ``observation``, ``lat``,
  ``lon``, ``date``, ``taxon``. Rows sharing an ``observation`` are one observation; without
  one, each row is its own, its id the path or url as written. A value given on any row of an
  observation applies to all of it; two different values are refused.
- a Camtrap DP package: its ``datapackage.json``, another ``.json`` descriptor, or a folder that
  holds a ``datapackage.json``. Its image media are read with their deployment's coordinates and
  their own timestamp's date. ``group_by="photo"``: each media is one observation (id: its
  ``mediaID``); ``group_by="event"``: per deployment, media less than ``event_gap`` seconds apart
  are one event. An event of more than ``MAX_PHOTOS`` media is split into consecutive chunks of at
  most ``MAX_PHOTOS``, each its own observation and its own event, since an observation is 1-5
  photos of one organism. Events are numbered per deployment in time order, chunks included:
  ``f"{deploymentID}-{n:05d}"``, from 1.

Everything is checked here, before the run starts: a source with a bad value is refused as a
whole (``SourceError``, the message naming the row and the column) rather than half-identified.
Files are not opened: a photo that is missing or unreadable is that observation's failure, later.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from app.batch.collection import Observation, PhotoRef, SourceKind, observation_to_json
from app.identification.request import MAX_PHOTOS, Place
from app.index.species_folders import IMAGE_SUFFIXES

GroupBy = Literal["photo", "folder", "event"]

DESCRIPTOR = "datapackage.json"
_URL_SCHEMES = ("http://", "https://")
_ACCEPTED = "a folder of photos, a .csv, or a Camtrap DP datapackage.json (or a folder holding one)"


class SourceError(ValueError):
    """a source that cannot be read: the message says what to fix"""


@dataclass(frozen=True)
class Source:
    """A source, read: its observations in a stable order (sorted paths for a folder, row order
    for a CSV, deployment then media timestamp for Camtrap DP) and what was left out.

    ``fingerprint`` tells one source from another: a DIR written from a different SOURCE (or the
    same one, changed) is detected, while re-reading an unchanged source gives the same value."""

    kind: SourceKind
    root: Path  # the folder, the CSV's folder, the package's folder
    path: Path  # what was given, resolved: the folder, the CSV, the descriptor
    observations: tuple[Observation, ...]
    package: Path | None  # the descriptor, for camtrap-dp
    fingerprint: str
    skipped: tuple[str, ...]  # rows and files left out, in words


def read_source(source: Path, *, group_by: GroupBy = "photo", event_gap: float = 60.0) -> Source:
    """Reads SOURCE into observations; ``SourceError`` when it cannot be, saying what to fix."""
    if not math.isfinite(event_gap) or event_gap < 0:
        raise SourceError(f"the event gap must be 0 seconds or more, not {event_gap}")
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"{source} does not exist: give {_ACCEPTED}")
    path = path.resolve()
    if path.is_dir():
        if (path / DESCRIPTOR).is_file():
            return _camtrap_dp(path / DESCRIPTOR, group_by, event_gap)
        return _folder(path, group_by)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv(path, group_by)
    if suffix == ".json":
        return _camtrap_dp(path, group_by, event_gap)
    raise SourceError(f"{source} is not a source: give {_ACCEPTED}")


def _source(
    kind: SourceKind,
    root: Path,
    path: Path,
    observations: list[Observation],
    skipped: list[str],
    package: Path | None = None,
) -> Source:
    return Source(
        kind=kind,
        root=root,
        path=path,
        observations=tuple(observations),
        package=package,
        fingerprint=_fingerprint(kind, path, observations),
        skipped=tuple(skipped),
    )


def _fingerprint(kind: SourceKind, path: Path, observations: Iterable[Observation]) -> str:
    """Everything an answer depends on: the ids, the photos and what the source says of each
    observation (its place, date, taxon, event), so that an edited row is another source. JSON,
    not joined strings, so that no value can pass for a separator; fed observation by
    observation, so a large source is never one string."""
    digest = hashlib.sha256(json.dumps([kind, str(path)], ensure_ascii=False).encode("utf-8"))
    for observation in observations:
        digest.update(observation_to_json(observation).encode("utf-8"))
    return digest.hexdigest()


# A folder


def _folder(root: Path, group_by: GroupBy) -> Source:
    if group_by == "event":
        raise SourceError(
            "--group-by event is for a Camtrap DP package (its media timestamps); "
            "for a folder use --group-by photo or folder"
        )
    photos = sorted(_photos_under(root), key=lambda rel: rel.parts)
    if not photos:
        raise SourceError(f"{root} holds no photos ({', '.join(sorted(IMAGE_SUFFIXES))}); give {_ACCEPTED}")
    observations: list[Observation] = []
    if group_by == "photo":
        for rel in photos:
            ref = PhotoRef(location=str(root / rel), given=rel.as_posix())
            observations.append(Observation(id=ref.given, photos=(ref,)))
    else:
        by_folder: dict[tuple[str, ...], list[Path]] = {}
        for rel in photos:
            by_folder.setdefault(rel.parent.parts, []).append(rel)
        for parts in sorted(by_folder):
            found = by_folder[parts]
            name = "/".join(parts) or "."
            if len(found) > MAX_PHOTOS:
                raise SourceError(
                    f"folder {name} holds {len(found)} photos: an observation is 1 to {MAX_PHOTOS} "
                    "photos of one organism; use --group-by photo, or split the folder"
                )
            refs = tuple(PhotoRef(location=str(root / rel), given=rel.as_posix()) for rel in found)
            observations.append(Observation(id=name, photos=refs))
    return _source("folder", root, root, observations, [])


def _photos_under(root: Path) -> Iterator[Path]:
    # os.walk, not rglob, so hidden folders (.git, .thumbnails) are pruned, not walked then dropped.
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        here = Path(folder)
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if (here / name).is_file():  # not a broken link
                yield (here / name).relative_to(root)


# A CSV


@dataclass
class _Group:
    """One CSV observation while its rows are read."""

    row: int
    photos: list[PhotoRef]
    values: dict[str, tuple[int, str]]  # column -> (row, value as normalised)


def _csv(path: Path, group_by: GroupBy) -> Source:
    if group_by != "photo":
        raise SourceError(
            f"--group-by {group_by} does not apply to a CSV: its observation column groups the rows"
        )
    root = path.parent
    skipped: list[str] = []
    groups: dict[str, _Group] = {}
    fields, rows = _table(path)
    if "path" not in fields and "url" not in fields:
        raise SourceError(
            f"{path}: a CSV needs a path or url column (optionally observation, lat, lon, date, "
            f"taxon); its header is {', '.join(fields) or 'empty'}"
        )
    for number, row in rows:
        ref = _csv_photo(row, number, root)
        if ref is None:
            skipped.append(f"row {number}: no path or url")
            continue
        key = row.get("observation") or ref.given
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(row=number, photos=[], values={})
        elif not row.get("observation"):
            raise SourceError(
                f"row {number}: {ref.given} is listed on row {group.row} too; give each photo "
                "once, or name the observations in an observation column"
            )
        group.photos.append(ref)
        if len(group.photos) > MAX_PHOTOS:
            raise SourceError(
                f"row {number}: observation {key} has more than {MAX_PHOTOS} photos; an "
                f"observation is 1 to {MAX_PHOTOS} photos of one organism"
            )
        for column, value in _csv_values(row, number).items():
            seen = group.values.setdefault(column, (number, value))
            if seen[1] != value:
                raise SourceError(
                    f"row {number}: observation {key} has {column} {value} here but "
                    f"{seen[1]} on row {seen[0]}; its rows must agree"
                )
    if not groups:
        raise SourceError(f"{path} lists no photos: fill its path or url column")
    observations = [_csv_observation(key, group) for key, group in groups.items()]
    return _source("csv", root, path, observations, skipped)


def _csv_photo(row: dict[str, str], number: int, root: Path) -> PhotoRef | None:
    given_path, url = row.get("path", ""), row.get("url", "")
    if given_path and url:
        raise SourceError(f"row {number}: give a path or a url, not both")
    if url:
        if not url.lower().startswith(_URL_SCHEMES):
            raise SourceError(f"row {number}, url: {url} is not an http(s) address")
        return PhotoRef(location=url, given=url)
    if not given_path:
        return None
    if given_path.lower().startswith(_URL_SCHEMES):  # an address in the path column is still one
        return PhotoRef(location=given_path, given=given_path)
    # Relative to the CSV, not to wherever the command runs; made absolute but not checked.
    location = Path(os.path.normpath(root / Path(given_path).expanduser()))
    return PhotoRef(location=str(location), given=given_path)


def _csv_values(row: dict[str, str], number: int) -> dict[str, str]:
    """The row's lat, lon, date, taxon, checked and normalised (so that ``5`` and ``5.0`` agree)."""
    values: dict[str, str] = {}
    lat, lon = row.get("lat", ""), row.get("lon", "")
    if bool(lat) != bool(lon):
        given, missing = ("lat", "lon") if lat else ("lon", "lat")
        raise SourceError(f"row {number}: {given} without {missing}; give both or neither")
    if lat:
        values["lat"] = repr(_coordinate(lat, "lat", 90.0, number))
        values["lon"] = repr(_coordinate(lon, "lon", 180.0, number))
    if row.get("date"):
        values["date"] = _iso_date(row["date"], number).isoformat()
    if row.get("taxon"):
        values["taxon"] = row["taxon"]
    return values


def _coordinate(text: str, column: str, bound: float, number: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SourceError(f"row {number}, {column}: {text!r} is not a number") from None
    if not math.isfinite(value) or not -bound <= value <= bound:
        raise SourceError(f"row {number}, {column}: {text} is not within -{bound:g} to {bound:g}")
    return value


def _iso_date(text: str, number: int) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).date()
    except ValueError:
        raise SourceError(
            f"row {number}, date: {text!r} is not an ISO date (YYYY-MM-DD, or an ISO date and time)"
        ) from None


def _csv_observation(key: str, group: _Group) -> Observation:
    values = {column: value for column, (_, value) in group.values.items()}
    date = dt.date.fromisoformat(values["date"]) if "date" in values else None
    place = None
    if "lat" in values:
        place = Place(float(values["lat"]), float(values["lon"]), date, source="row")
    return Observation(
        id=key,
        photos=tuple(group.photos),
        place=place,
        date=date.isoformat() if date is not None and place is None else None,
        taxon=values.get("taxon"),
    )


# A Camtrap DP package


@dataclass(frozen=True)
class _Deployment:
    id: str
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class _Media:
    photo: PhotoRef
    deployment: _Deployment
    taken: dt.datetime  # for ordering and gaps; the date is the one written, in its own offset
    row: int


def _camtrap_dp(descriptor: Path, group_by: GroupBy, event_gap: float) -> Source:
    if group_by == "folder":
        raise SourceError(
            "--group-by folder is for a folder of photos; for a Camtrap DP package use "
            "--group-by photo (each media) or event (media close in time)"
        )
    root = descriptor.parent
    resources = _resources(descriptor)
    deployments = _deployments(list(_rows(resources, "deployments", root, descriptor)))
    skipped: list[str] = []
    media = _media(_rows(resources, "media", root, descriptor), deployments, root, skipped)
    # Deployments in their table's order, each one's media in time order (stable: ties keep
    # the media table's order), so that events are runs of consecutive media.
    rank = {deployment_id: n for n, deployment_id in enumerate(deployments)}
    media.sort(key=lambda m: (rank[m.deployment.id], m.taken))
    if group_by == "event":
        observations = _events(media, event_gap)
    else:
        observations = [_observation(m.photo.media_id or "", [m]) for m in media]
    return _source("camtrap-dp", root, descriptor, observations, skipped, package=descriptor)


def _resources(descriptor: Path) -> dict[str, dict[str, Any]]:
    try:
        with descriptor.open(encoding="utf-8-sig") as fh:
            package = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{descriptor}: not a readable Data Package descriptor ({exc})") from None
    listed = package.get("resources") if isinstance(package, dict) else None
    if not isinstance(listed, list):
        raise SourceError(f"{descriptor}: a Data Package descriptor needs a resources list")
    return {r["name"]: r for r in listed if isinstance(r, dict) and isinstance(r.get("name"), str)}


def _rows(
    resources: dict[str, dict[str, Any]], name: str, root: Path, descriptor: Path
) -> Iterator[tuple[int, dict[str, str]]]:
    """A resource's rows, numbered as a spreadsheet shows them (the header is row 1)."""
    resource = resources.get(name)
    if resource is None:
        raise SourceError(f"{descriptor}: no {name} resource; a Camtrap DP package has deployments and media")
    paths = resource.get("path")
    # A Data Package resource's path is one file or a list of chunks of one table.
    chunks = [paths] if isinstance(paths, str) else paths
    if not isinstance(chunks, list) or not chunks or not all(isinstance(p, str) for p in chunks):
        raise SourceError(f"{descriptor}: the {name} resource needs a path to its CSV")
    dialect = resource.get("dialect")
    delimiter = dialect.get("delimiter", ",") if isinstance(dialect, dict) else ","
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise SourceError(f"{descriptor}: the {name} resource's delimiter {delimiter!r} is not one character")
    for chunk in chunks:
        if chunk.lower().startswith(_URL_SCHEMES):
            raise SourceError(f"{descriptor}: {name} is at {chunk}; download the package and give its copy")
        relative = PurePosixPath(chunk)
        if relative.is_absolute() or ".." in relative.parts:
            # The Data Package standard forbids it, and the Camtrap DP output could not copy it.
            raise SourceError(f"{descriptor}: the {name} table {chunk} is outside the package's folder")
        table = root / chunk
        if not table.is_file():
            raise SourceError(f"{descriptor}: the {name} table {table} does not exist")
        yield from _table(table, delimiter, lower=False)[1]


def _deployments(rows: list[tuple[int, dict[str, str]]]) -> dict[str, _Deployment]:
    found: dict[str, _Deployment] = {}
    for number, row in rows:
        deployment_id = row.get("deploymentID", "")
        if not deployment_id:
            raise SourceError(f"deployments row {number}: no deploymentID")
        lat, lon = row.get("latitude", ""), row.get("longitude", "")
        where = f"deployments row {number} ({deployment_id})"
        if bool(lat) != bool(lon):
            raise SourceError(f"{where}: give both latitude and longitude, or neither")
        found[deployment_id] = _Deployment(
            deployment_id,
            _coordinate(lat, "latitude", 90.0, number) if lat else None,
            _coordinate(lon, "longitude", 180.0, number) if lon else None,
        )
    return found


def _media(
    rows: Iterable[tuple[int, dict[str, str]]],
    deployments: dict[str, _Deployment],
    root: Path,
    skipped: list[str],
) -> list[_Media]:
    found: list[_Media] = []
    seen: dict[str, int] = {}
    any_rows = False
    for number, row in rows:
        any_rows = True
        media_id, file_path = row.get("mediaID", ""), row.get("filePath", "")
        where = f"media row {number}" + (f" ({media_id})" if media_id else "")
        if not _is_image(row.get("fileMediatype", ""), file_path):
            kind = row.get("fileMediatype") or "no fileMediatype"
            skipped.append(f"{where}: {kind}, not a photo")
            continue
        if not file_path:
            skipped.append(f"{where}: no filePath")
            continue
        if not media_id:
            raise SourceError(f"{where}: no mediaID")
        if media_id in seen:
            raise SourceError(f"{where}: mediaID {media_id} is on media row {seen[media_id]} too")
        seen[media_id] = number
        deployment = deployments.get(row.get("deploymentID", ""))
        if deployment is None:
            named = row.get("deploymentID") or "(empty)"
            raise SourceError(f"{where}: deploymentID {named} is not in the deployments table")
        timestamp = row.get("timestamp", "")
        location = file_path if file_path.lower().startswith(_URL_SCHEMES) else str(root / file_path)
        photo = PhotoRef(location=location, given=file_path, media_id=media_id, timestamp=timestamp)
        found.append(_Media(photo, deployment, _timestamp(timestamp, where), number))
    if not any_rows:
        raise SourceError("the package has no media")
    if not found:
        raise SourceError(f"the package has no image media ({len(skipped)} media left out)")
    return found


def _is_image(mediatype: str, file_path: str) -> bool:
    if mediatype:
        return mediatype.lower().startswith("image/")
    # fileMediatype is required, but a package without it still names its files.
    return Path(file_path).suffix.lower() in IMAGE_SUFFIXES


def _timestamp(text: str, where: str) -> dt.datetime:
    try:
        taken = dt.datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z as UTC
    except ValueError:
        raise SourceError(
            f"{where}, timestamp: {text!r} is not an ISO 8601 date and time (2020-05-30T04:57:37+02:00)"
        ) from None
    # Camtrap DP requires the offset; one left out is read as UTC so that times still compare.
    return taken if taken.tzinfo is not None else taken.replace(tzinfo=dt.UTC)


def _events(media: list[_Media], event_gap: float) -> list[Observation]:
    observations: list[Observation] = []
    numbers: dict[str, int] = {}
    event: list[_Media] = []

    def close() -> None:
        # Chunks of MAX_PHOTOS: an observation is 1-5 photos of one organism.
        for start in range(0, len(event), MAX_PHOTOS):
            chunk = event[start : start + MAX_PHOTOS]
            deployment_id = chunk[0].deployment.id
            numbers[deployment_id] = numbers.get(deployment_id, 0) + 1
            observations.append(_observation(f"{deployment_id}-{numbers[deployment_id]:05d}", chunk, True))
        event.clear()

    for m in media:
        if event and (
            m.deployment.id != event[-1].deployment.id
            or (m.taken - event[-1].taken).total_seconds() >= event_gap
        ):
            close()
        event.append(m)
    close()
    return observations


def _observation(observation_id: str, media: list[_Media], event: bool = False) -> Observation:
    first, deployment = media[0], media[0].deployment
    place = None
    if deployment.lat is not None and deployment.lon is not None:
        place = Place(deployment.lat, deployment.lon, first.taken.date(), source="deployment")
    return Observation(
        id=observation_id,
        photos=tuple(m.photo for m in media),
        place=place,
        date=first.taken.date().isoformat() if place is None else None,
        deployment_id=deployment.id,
        event_id=observation_id if event else None,
        event_start=first.photo.timestamp if event else None,
        event_end=media[-1].photo.timestamp if event else None,
    )


def _table(
    path: Path, delimiter: str = ",", *, lower: bool = True
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """A CSV's header (stripped; lower-cased for a collection CSV, whose columns are ours) and
    its rows, numbered as a spreadsheet shows them (the header is row 1), cells stripped."""
    try:
        # utf-8-sig: spreadsheets often save a CSV with a byte order mark, which would otherwise
        # name the first column "\ufeffpath".
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            header = [(n or "").strip() for n in reader.fieldnames or ()]
            header = [n.lower() for n in header] if lower else header
            reader.fieldnames = header
            rows = [
                (number, {k: (v or "").strip() for k, v in raw.items() if isinstance(k, str)})
                for number, raw in enumerate(reader, start=2)
            ]
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not UTF-8 text; save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise SourceError(f"{path}: not a readable CSV ({exc})") from None
    return header, rows
