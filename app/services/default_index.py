"""The first-run species index: when INDEX_DIR holds no index, build a small real one from
labelled photos on disk with the manifest's offline embedder, so that ``POST /img_url`` answers
on a new checkout's first ``make serve`` instead of 503 ``index_unavailable``.

It never downloads anything and never touches an index that exists (a refused one included:
that is the user's to rebuild). Photos are any layout ``build-index`` reads (one folder per
species, or a CSV of ``path,label[,common_name]``) or the Leeds Butterfly Dataset's own
(``images/NNN_XXXX.jpg`` + ``descriptions/NNN.txt``: line 1 the scientific name, line 2 the
common name), also found as ``leedsbutterfly/`` inside the folder given (``../shared/datasets``).
Whatever happens, the outcome says what was built, or why nothing was and how to build one.
"""

from __future__ import annotations

import csv
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.errors import ServiceError
from app.index.artifacts import IndexDir
from app.index.builder import BuildReport, build_index
from app.models.registry import ready_model
from app.services.index_hint import DEFAULT_EMBEDDER, absent_note, build_command
from app.settings import Settings

LEEDS_FOLDER = "leedsbutterfly"


@dataclass(frozen=True, slots=True)
class DefaultIndexOutcome:
    status: Literal["built", "kept", "not_built"]  # kept: an index was there already
    message: str  # what was built, or why nothing was and what to run instead
    report: BuildReport | None = None
    seconds: float | None = None  # the build's wall time, embedding included

    @property
    def built(self) -> bool:
        return self.status == "built"


def _leeds_root(photos: Path) -> Path | None:
    for root in (photos, photos / LEEDS_FOLDER):
        if (root / "images").is_dir() and (root / "descriptions").is_dir():
            return root
    return None


def _leeds_csv(root: Path, out: Path) -> Path:
    """The Leeds layout as the CSV ``build-index`` reads (absolute paths, names from descriptions)."""
    names: dict[str, tuple[str, str]] = {}
    for description in sorted((root / "descriptions").glob("*.txt")):
        lines = [line.strip() for line in description.read_text(errors="replace").splitlines()]
        if lines and lines[0]:
            names[description.stem] = (lines[0], lines[1] if len(lines) > 1 else "")
    rows = [
        (str(image.resolve()), *names[image.name.split("_")[0]])
        for image in sorted((root / "images").iterdir())
        if image.is_file() and image.name.split("_")[0] in names
    ]
    if not rows:
        raise FileNotFoundError(f"{root}: no photo in images/ matches a descriptions/NNN.txt")
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "common_name"])
        writer.writerows(rows)
    return out


def _not_built(why: str, out: Path) -> DefaultIndexOutcome:
    return DefaultIndexOutcome("not_built", f"{why}. {absent_note(out)}")


def ensure_default_index(
    settings: Settings, photos: Path, *, embedder: str = DEFAULT_EMBEDDER, progress: bool = False
) -> DefaultIndexOutcome:
    """Builds and publishes an index of ``photos`` in ``settings.index.dir`` if none is there.
    Blocking (seconds for a few hundred photos); never raises for a missing or unusable input."""
    out = settings.index.dir
    version = IndexDir(out).current_version()
    if version is not None:
        return DefaultIndexOutcome("kept", f"species index {out}/{version} exists: kept as it is")
    if not photos.exists():
        return _not_built(f"no photos at {photos} for a default index", out)
    with tempfile.TemporaryDirectory(prefix="default-index-") as tmp:
        try:
            leeds = _leeds_root(photos)
            source = _leeds_csv(leeds, Path(tmp) / "photos.csv") if leeds is not None else photos
            started = time.perf_counter()
            with ready_model(settings.models, embedder, "embedder", settings.admission) as model:
                report = build_index(
                    source, out, model, max_pixels=settings.images.max_pixels,
                    workers=settings.admission.inference_workers, progress=progress,
                )  # fmt: skip
            seconds = time.perf_counter() - started
        except ServiceError as exc:  # the embedder is not in the manifest, or not installed
            reason = f"embedder {embedder} is not usable: {exc.message}"
            return _not_built(f"no default index built ({reason})", out)
        except (ValueError, OSError) as exc:  # no readable photos, a read-only INDEX_DIR, ...
            return _not_built(f"no default index built from {photos} ({exc})", out)
    m = report.manifest
    skipped = f", {report.skipped} unreadable photos skipped" if report.skipped else ""
    message = (
        f"built a default species index for /img_url: {m.n_vectors} photos of {m.n_species} species "
        f"from {photos}{skipped}, embedder {embedder}, published as {out}/{m.version} in {seconds:.1f} s. "
        f"It is a small demo index; a production one: "
        f"`{build_command(out, 'PHOTOS_DIR', 'inat_inception_v3')}` (README: Building the production index)"
    )
    return DefaultIndexOutcome("built", message, report, seconds)
