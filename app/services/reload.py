"""Re-reading the model manifests while serving: on request (POST /v1/models/reload) and, for
replicas, every MODELS_RELOAD_INTERVAL seconds."""

from __future__ import annotations

import asyncio
import logging

from app.errors import ManifestInvalid
from app.models.manifest import ManifestError
from app.models.registry import Registry, Reloaded, read_manifests
from app.settings import ModelSettings

log = logging.getLogger(__name__)


async def reload_models(registry: Registry, settings: ModelSettings) -> Reloaded:
    """New or changed entries (of the shipped and the user manifest) are loaded aside and
    swapped in; the rest keep serving, and so does the loaded version of an entry whose new one
    fails to load (``refused``, with the reason). A broken manifest is refused
    (ManifestInvalid) and nothing changes."""
    try:
        manifest = await asyncio.to_thread(read_manifests, settings)
    except ManifestError as exc:
        raise ManifestInvalid(str(exc)) from exc
    return await asyncio.to_thread(registry.reload, manifest)


async def watch_manifest(registry: Registry, settings: ModelSettings, interval: float) -> None:
    """Runs until cancelled; a broken manifest is logged and the models already loaded keep
    serving."""
    while True:
        await asyncio.sleep(interval)
        try:
            reloaded = await reload_models(registry, settings)
        except ManifestInvalid as exc:
            log.warning("manifest not reloaded: %s", exc.message)
            continue
        if reloaded.loaded:
            log.info("manifest changed: loaded %s", ", ".join(reloaded.loaded))
