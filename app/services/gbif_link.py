"""link-gbif: every label of a model (or species of an index) resolved against GBIF once,
into the taxonomy file the service joins onto results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.enrich.gbif import open_gbif
from app.enrich.link import LinkReport, link_names
from app.enrich.taxonomies import INDEX_TAXONOMY_FILE, index_taxonomy_path
from app.errors import BadRequest
from app.index.artifacts import IndexDir
from app.models.labels import load_labels
from app.models.manifest import load_manifest
from app.settings import GbifSettings


@dataclass(frozen=True, slots=True)
class LinkTarget:
    names: list[str]
    out: Path
    # For a model whose manifest entry does not declare its taxonomy file yet: the line to add.
    manifest_hint: str | None = None


def model_target(manifest_path: Path, model: str, out: Path | None = None) -> LinkTarget:
    """Reads only the manifest and the label map: no model weights are loaded."""
    manifest = load_manifest(manifest_path)
    spec = next((m for m in manifest.models if m.name == model and m.labels), None)
    if spec is None or spec.labels is None:
        raise BadRequest(f"no model with a label map named {model!r}")
    labels = load_labels(manifest.resolve(spec.labels), None)
    names = [label.scientific_name for i, label in enumerate(labels) if i != spec.background_index]
    default = (
        manifest.resolve(spec.taxonomy)
        if spec.taxonomy
        else manifest.resolve(spec.labels).parent / INDEX_TAXONOMY_FILE
    )
    target = out or default
    hint = None
    if spec.taxonomy is None:
        base, written = manifest.base_dir, target.resolve()  # a relative --out is the working dir's
        shown = written.relative_to(base) if written.is_relative_to(base) else written
        hint = f'add  taxonomy = "{shown}"  to the {model} entry of the manifest to serve it'
    return LinkTarget(names, target, hint)


def index_target(index: Path, out: Path | None = None) -> LinkTarget:
    """IndexLoadError when the folder holds no readable index."""
    names = [label.scientific_name for label in IndexDir(index).load().labels]
    return LinkTarget(names, out or index_taxonomy_path(index))


async def link(
    target: LinkTarget, settings: GbifSettings, *, rate: float, kingdom: str | None, progress: bool
) -> LinkReport:
    async with open_gbif(settings) as client:
        return await link_names(
            target.names, client, target.out, rate=rate, kingdom=kingdom, progress=progress
        )
