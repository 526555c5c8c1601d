"""Class labels: scientific names by class index, with common names where a file gives them."""

from __future__ import annotations

import csv
from pathlib import Path

from app.core.types import Label

__all__ = ["Label", "load_labels"]


def _split_common(line: str) -> tuple[str, str | None]:
    """'Poecile atricapillus (Black-capped Chickadee)' -> both parts; 'background' -> no common."""
    line = line.strip()
    if line.endswith(")") and " (" in line:
        scientific, _, common = line.partition(" (")
        return scientific.strip(), common[:-1].strip() or None
    return line, None


def _read_csv(path: Path) -> list[Label]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "name" not in rows[0]:
        raise ValueError(f"{path}: expected a header with an 'name' column (id,name)")
    by_id: dict[int, Label] = {}
    for position, row in enumerate(rows):
        index = int(row["id"]) if row.get("id") not in (None, "") else position
        common = (row.get("common_name") or "").strip() or None
        by_id[index] = Label(scientific_name=row["name"].strip(), common_name=common)
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"{path}: ids must run 0..{len(by_id) - 1} without gaps")
    return [by_id[i] for i in range(len(by_id))]


def _read_lines(path: Path) -> list[str]:
    return [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_labels(labels: Path, common_names: Path | None = None) -> list[Label]:
    if labels.suffix.lower() == ".csv":
        result = _read_csv(labels)
    else:
        result = [
            Label(scientific_name=name, common_name=common)
            for name, common in map(_split_common, _read_lines(labels))
        ]
    if common_names is not None:
        commons = [_split_common(line)[1] for line in _read_lines(common_names)]
        if len(commons) != len(result):
            raise ValueError(
                f"{common_names} has {len(commons)} lines but {labels} has {len(result)} classes"
            )
        result = [
            Label(scientific_name=label.scientific_name, common_name=label.common_name or common)
            for label, common in zip(result, commons, strict=True)
        ]
    return result
