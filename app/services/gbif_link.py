"""link-gbif: every label of a model (or species of an index) resolved against GBIF once,
into the taxonomy file the service joins onto results; a user model's entry (local.toml) is
told where it is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.enrich.gbif import open_gbif
from app.enrich.link import LinkReport, link_names
from app.enrich.taxonomies import INDEX_TAXONOMY_FILE, index_taxonomy_path
from app.errors import BadRequest
from app.index.artifacts import IndexDir
from app.models.labels import load_labels
from app.models.manifest import set_entry_field
from app.models.registry import read_manifests
from app.settings import GbifSettings, ModelSettings


@dataclass(frozen=True, slots=True)
class LinkTarget:
    names: list[str]
    out: Path
    # For a shipped model whose entry does not declare its taxonomy file: the line to add.
    manifest_hint: str | None = None
    # For a user model (local.toml) without one: (manifest, model, path) that link() declares
    # there once the file is written, so the server joins it after a reload.
    declare: tuple[Path, str, str] | None = None
    shipped: Path | None = None  # the manifest the user's is merged with (validation)


def model_target(settings: ModelSettings, model: str, out: Path | None = None) -> LinkTarget:
    """Reads only the manifests and the label map: no model weights are loaded."""
    manifest = read_manifests(settings)
    spec = next((m for m in manifest.models if m.name == model and m.labels), None)
    if spec is None or spec.labels is None:
        raise BadRequest(f"no model with a label map named {model!r}")
    labels = load_labels(manifest.resolve(spec.labels, spec), None)
    names = [label.scientific_name for i, label in enumerate(labels) if i != spec.background_index]
    default = (
        manifest.resolve(spec.taxonomy, spec)
        if spec.taxonomy
        else manifest.resolve(spec.labels, spec).parent / INDEX_TAXONOMY_FILE
    )
    target = out or default
    if spec.taxonomy is not None:
        return LinkTarget(names, target)
    origin = spec.manifest_file or settings.manifest
    base, written = origin.resolve().parent, target.resolve()  # a relative --out is the working dir's
    shown = str(written.relative_to(base) if written.is_relative_to(base) else written)
    if origin == settings.user_manifest:
        return LinkTarget(names, target, declare=(origin, model, shown), shipped=settings.manifest)
    hint = f'add  taxonomy = "{shown}"  to the {model} entry of {origin} to serve it'
    return LinkTarget(names, target, manifest_hint=hint)


def index_target(index: Path, out: Path | None = None) -> LinkTarget:
    """IndexLoadError when the folder holds no readable index."""
    names = [label.scientific_name for label in IndexDir(index).load().labels]
    return LinkTarget(names, out or index_taxonomy_path(index))


async def link(
    target: LinkTarget, settings: GbifSettings, *, rate: float, kingdom: str | None, progress: bool
) -> LinkReport:
    async with open_gbif(settings) as client:
        report = await link_names(
            target.names, client, target.out, rate=rate, kingdom=kingdom, progress=progress
        )
    if target.declare is not None:
        manifest, model, path = target.declare
        set_entry_field(manifest, model, "taxonomy", path, shipped=target.shipped)
    return report
