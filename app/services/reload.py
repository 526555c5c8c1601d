"""Re-reading the model manifest while serving: on request (POST /v1/models/reload) and, for
replicas, every MODELS_RELOAD_INTERVAL seconds."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from app.errors import ManifestInvalid
from app.models.manifest import ManifestError, load_manifest
from app.models.registry import Registry

log = logging.getLogger(__name__)


async def reload_models(registry: Registry, manifest_path: Path) -> list[str]:
    """New or changed entries are loaded aside and swapped in; the rest keep serving. A broken
    manifest is refused (ManifestInvalid) and nothing changes. Returns the names loaded."""
    try:
        manifest = await asyncio.to_thread(load_manifest, manifest_path)
    except ManifestError as exc:
        raise ManifestInvalid(str(exc)) from exc
    return await asyncio.to_thread(registry.reload, manifest)


async def watch_manifest(registry: Registry, manifest_path: Path, interval: float) -> None:
    """Runs until cancelled; a broken manifest is logged and the models already loaded keep
    serving."""
    while True:
        await asyncio.sleep(interval)
        try:
            reloaded = await reload_models(registry, manifest_path)
        except ManifestInvalid as exc:
            log.warning("manifest not reloaded: %s", exc.message)
            continue
        if reloaded:
            log.info("manifest changed: loaded %s", ", ".join(reloaded))
