"""Every labelled real photo the tests have, by group: the Leeds butterflies, ../shared's mixed set
and samples, and scikit-image's bundled photographs (no organism; in its wheel, no download).

``python -m tests.support.datasets OUT`` writes the CSVs (``path,label``) that `make calibration`
fits the shipped calibrations on: ``birds.csv`` and ``insects.csv`` (photos of species the
models know)."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.reference import leeds

# scikit-image's bundled photos that mixed/other does not already hold (astronaut, brick, camera,
# chelsea, coffee, coins, gravel, hubble, motorcycle_left and rocket are there).
SKIMAGE_EXTRA = (
    "cell.png", "chessboard_RGB.png", "clock_motion.png", "color.png", "grass.png", "horse.png",
    "ihc.png", "logo.png", "microaneurysms.png", "moon.png", "page.png", "phantom.png", "retina.jpg",
    "text.png", "no_time_for_that_tiny.gif",
)  # fmt: skip


@dataclass(frozen=True)
class Labelled:
    path: Path
    source: str  # leeds, mixed, samples, skimage
    group: str  # birds, insects, plants, other
    name: str  # scientific name ("" for no organism)
    known: bool  # the group's model has the species (insects in mixed are ones it does not)


def model_species(shared: Path) -> dict[str, set[str]]:
    """group -> the scientific names its model has (the label maps in ../shared/models)."""
    out = {}
    for group, model in (("birds", "aiy_birds_v1"), ("insects", "aiy_insects_v1")):
        with (shared / "models" / model / "labelmap.csv").open(newline="") as fh:
            out[group] = {row["name"].strip() for row in csv.DictReader(fh)}
    return out


def photos(shared: Path, with_skimage: bool = True) -> list[Labelled]:
    species = model_species(shared)

    def known(group: str, name: str) -> bool:  # mixed/insects are mostly species the model lacks
        return name in species.get(group, set())

    rows = [Labelled(path, "leeds", "insects", name, known("insects", name)) for path, name in leeds(shared)]
    for source, root, listing in (
        ("mixed", shared / "datasets" / "mixed" / "images", shared / "datasets" / "mixed" / "labels.csv"),
        ("samples", shared / "samples", shared / "samples" / "labels.csv"),
    ):
        with listing.open(newline="") as fh:
            for r in csv.DictReader(fh):
                name = r["scientific_name"]
                rows.append(Labelled(root / r["file"], source, r["group"], name, known(r["group"], name)))
    if with_skimage:
        try:
            import skimage
        except ImportError:
            return rows
        data = Path(skimage.__file__).parent / "data"
        rows += [Labelled(data / name, "skimage", "other", "", False) for name in SKIMAGE_EXTRA]
    return rows


def write_csv(rows: list[Labelled], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows((str(r.path), r.name) for r in rows)
    return path


def calibration_sets(shared: Path, out: Path) -> dict[str, Path]:
    shared = shared.resolve()  # the CSV paths must not depend on where they are read from
    """The in-scope photos of each model's group whose species it knows."""
    out.mkdir(parents=True, exist_ok=True)
    rows = photos(shared, with_skimage=False)
    return {
        group: write_csv([r for r in rows if r.group == group and r.known], out / f"{group}.csv")
        for group in ("birds", "insects")
    }


if __name__ == "__main__":
    shared_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[3] / "shared"
    for group, written in calibration_sets(shared_dir, Path(sys.argv[1])).items():
        print(f"{group}: {written}")
