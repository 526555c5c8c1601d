"""Species lists a request narrows its answer to: installed under LISTS_DIR (``NAME.txt``, one
scientific name a line, ``#`` comments; BirdNET's ``Genus species_Common name`` lines; a CSV with
a name column) or uploaded beside the photos, both under one byte cap (LISTS_MAX_BYTES)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from app.errors import BadRequest, PayloadTooLarge, SpeciesListNotFound
from app.settings import ListSettings


def normalise(name: str) -> str:
    """Names compare case-insensitively, whatever the spacing: ``vanessa  Cardui`` is Vanessa cardui."""
    return " ".join(name.split()).casefold()


# The header cells a CSV list may name its scientific names by (case-insensitive).
NAME_COLUMNS = ("scientific_name", "scientificname", "scientific name", "name", "species", "taxon", "label")
LIST_SUFFIXES = (".txt", ".csv")
_LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class SpeciesList:
    name: str  # the installed list's file name, or the uploaded file's
    source: Literal["installed", "upload"]
    names: tuple[str, ...]  # as listed (the first spelling of each), in order

    @cached_property
    def keys(self) -> dict[str, str]:
        return {normalise(name): name for name in self.names}


def parse_species_list(data: bytes, name: str, source: Literal["installed", "upload"]) -> SpeciesList:
    """Text (one name a line, ``#`` comments, BirdNET's ``Sci_Common`` lines) or CSV (a header
    naming the column: scientific_name, name, species; or a single column)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest(f"species list {name}: not UTF-8 text", detail={"species_list": name}) from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if name.lower().endswith(".csv") or (lines and "," in lines[0]):
        found = _csv_names(lines, name)
    else:
        # A trailing comment goes; BirdNET writes "Genus species_Common name" (no scientific
        # name holds an underscore).
        found = [line.split("#", 1)[0].split("_", 1)[0].strip() for line in lines]
    unique: dict[str, str] = {}
    for entry in found:
        if entry and normalise(entry) not in unique:
            unique[normalise(entry)] = " ".join(entry.split())
    if not unique:
        raise BadRequest(
            f"species list {name} lists no names (one scientific name a line, or a CSV with a "
            "scientific_name column)",
            detail={"species_list": name},
        )
    return SpeciesList(name, source, tuple(unique.values()))


def _csv_names(lines: list[str], name: str) -> list[str]:
    rows = [row for row in csv.reader(io.StringIO("\n".join(lines))) if row]
    header = [cell.strip().casefold() for cell in rows[0]]
    column = next((header.index(c) for c in NAME_COLUMNS if c in header), None)
    if column is not None:
        rows = rows[1:]
    elif len(header) == 1:
        column = 0  # one column, no header: every row is a name
    else:
        raise BadRequest(
            f"species list {name}: a CSV of several columns needs a header naming the names' column "
            f"({', '.join(NAME_COLUMNS[:2])} or name)",
            detail={"species_list": name, "header": rows[0][:10]},
        )
    return [row[column] for row in rows if len(row) > column]


class SpeciesLists:
    """The lists installed under LISTS_DIR, and uploaded ones, both under the same byte cap."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = folder, max_bytes

    @classmethod
    def from_settings(cls, lists: ListSettings) -> SpeciesLists:
        return cls(lists.dir, lists.max_bytes)

    def available(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.iterdir() if p.suffix in LIST_SUFFIXES and p.is_file())

    def load(self, name: str) -> SpeciesList:
        """Blocking (a small file read)."""
        if not _LIST_NAME.fullmatch(name) or ".." in name:
            raise BadRequest(
                f"species_list {name[:80]!r} is not a list name (letters, digits, '_', '-', '.')",
                detail={"species_list": name[:80]},
            )
        suffixed = Path(name).suffix in LIST_SUFFIXES
        paths = [self.folder / name] if suffixed else [self.folder / f"{name}{s}" for s in LIST_SUFFIXES]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            available = self.available()
            raise SpeciesListNotFound(
                f"no species list {name!r} in {self.folder} (installed: {', '.join(available) or 'none'}); "
                f"install NAME.txt there, one scientific name a line, or upload the file as species_list",
                detail={"species_list": name, "available": available},
            )
        self._check_size(path.stat().st_size, path.name)
        return parse_species_list(path.read_bytes(), path.name, "installed")

    def upload(self, data: bytes, filename: str | None) -> SpeciesList:
        self._check_size(len(data), filename or "the uploaded list")
        return parse_species_list(data, filename or "upload", "upload")

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_bytes:
            raise PayloadTooLarge(
                f"species list {what} is larger than {self.max_bytes} bytes (LISTS_MAX_BYTES)",
                detail={"max_bytes": self.max_bytes},
            )
