"""Labelled photos: one sub-folder per species, or a CSV of ``path,label[,common_name]``.

Both plain ``Genus_species`` folders and iNaturalist 2021 folders
(``00001_Animalia_Arthropoda_Chilopoda_Geophilomorpha_Geophilidae_Geophilus_vittatus``) are
understood; a ``labels.csv`` (``folder,scientific_name[,common_name]``) beside them overrides.
A CSV's relative paths are read from the CSV's own folder.
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


def _from_csv(path: Path) -> list[LabelledImage]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        label = "label" if "label" in fields else "scientific_name"
        if "path" not in fields or label not in fields:
            raise ValueError(f"{path}: needs a header with 'path' and 'label' columns")
        found = []
        for line, row in enumerate(reader, 2):
            name = (row[label] or "").strip()
            if not row["path"] or not name:
                raise ValueError(f"{path}:{line}: empty path or label")
            image = Path(row["path"]).expanduser()
            common = (row.get("common_name") or "").strip() or None
            found.append(LabelledImage(image if image.is_absolute() else path.parent / image, name, common))
    if not found:
        raise FileNotFoundError(f"{path} lists no photos")
    return found


def labelled_images(root: Path) -> list[LabelledImage]:
    """Every photo under ``root/<species>/`` (sorted, so chunking and resuming are stable), or
    every row of ``root`` when it is a CSV (in its order)."""
    if root.is_file() and root.suffix.lower() == ".csv":
        return _from_csv(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is neither a folder nor a .csv")
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
