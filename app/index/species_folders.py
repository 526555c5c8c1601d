"""Labelled photo folders: one sub-folder per species.

Both plain ``Genus_species`` folders and iNaturalist 2021 folders
(``00001_Animalia_Arthropoda_Chilopoda_Geophilomorpha_Geophilidae_Geophilus_vittatus``) are
understood; a ``labels.csv`` (``folder,scientific_name[,common_name]``) beside them overrides.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
# iNat 2021: a 5-digit id, then kingdom, phylum, class, order, family, genus, species.
_INAT_2021 = re.compile(r"^\d{5}_(?:[A-Za-z]+_){5}(?P<genus>[A-Za-z]+)_(?P<species>[a-z][a-z\-]*)$")


@dataclass(frozen=True, slots=True)
class LabelledImage:
    path: Path
    scientific_name: str
    common_name: str | None = None


def species_from_folder(name: str) -> str:
    """``Danaus_plexippus`` or an iNat 2021 folder name -> ``Danaus plexippus``."""
    match = _INAT_2021.match(name)
    if match:
        return f"{match['genus']} {match['species']}"
    words = name.replace("_", " ").split()
    if not words:
        raise ValueError(f"cannot read a species name from folder {name!r}")
    return " ".join([words[0].capitalize(), *words[1:]])


def _overrides(root: Path) -> dict[str, tuple[str, str | None]]:
    path = root / "labels.csv"
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {
            row["folder"]: (row["scientific_name"].strip(), (row.get("common_name") or "").strip() or None)
            for row in csv.DictReader(fh)
        }


def labelled_images(root: Path) -> list[LabelledImage]:
    """Every photo under ``root/<species>/``, sorted, so chunking (and resuming) is stable."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    overrides = _overrides(root)
    found: list[LabelledImage] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        scientific, common = overrides.get(folder.name, (species_from_folder(folder.name), None))
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.append(LabelledImage(path, scientific, common))
    if not found:
        raise FileNotFoundError(f"no photos under {root}/<species>/")
    return found
