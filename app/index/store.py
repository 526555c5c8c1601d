"""The server's view of INDEX_DIR: the loaded version, swapped when ``current`` moves.

Requests check the ``current`` link (one readlink) and, when another process (``add-to-index``,
a rebuild) has published a new version, load it off the event loop; requests already running
keep the version they started with. ``add`` extends the index in this process under the same
file lock the CLI takes.
"""

from __future__ import annotations

import errno
import logging
import threading
from pathlib import Path
from typing import Literal

import numpy as np

from app.core import Label
from app.errors import IndexUnavailable, InsufficientStorage, ServiceError
from app.index.artifacts import IndexDir, IndexLoadError, SpeciesIndex
from app.index.publishing import add_photos, check_embedder
from app.models.registry import LoadedModel, Registry

log = logging.getLogger(__name__)

IndexState = Literal["absent", "ready", "refused"]


class IndexStore:
    def __init__(self, directory: Path, registry: Registry) -> None:
        self.dir = IndexDir(directory)
        self._registry = registry
        self._lock = threading.Lock()
        self._index: SpeciesIndex | None = None
        self._embedder: LoadedModel | None = None
        self._seen: str | None = None  # the version last tried, loaded or refused
        self._refused_stamp: int | None = None  # the refused version's files, as they were then
        self.state: IndexState = "absent"
        self.reason: str | None = f"no index in {directory}: build one with `python -m app build-index`"

    def _embedder_replaced(self) -> bool:
        # A model reload swapped the embedder's entry (its file changed): the index must be
        # checked against the new one, and queries embedded by it.
        embedder = self._embedder
        return embedder is not None and self._registry.get_any(embedder.spec.name) is not embedder

    def _changed(self, version: str | None) -> bool:
        if version != self._seen or self._embedder_replaced():
            return True
        # A refused version is retried once its folder changes (restored, repaired): only then
        # does a request pay a stat beyond the readlink.
        return (
            self.state == "refused"
            and version is not None
            and (self.dir.version_stamp(version) != self._refused_stamp)
        )

    @property
    def stale(self) -> bool:
        return self._changed(self.dir.current_version())

    def refresh(self) -> None:
        """Blocking: loads the current version if it, its folder after a refusal, or its embedder
        changed. Never raises."""
        with self._lock:
            version = self.dir.current_version()
            if not self._changed(version):
                return
            self._seen = version
            self._refused_stamp = None if version is None else self.dir.version_stamp(version)
            if version is None:
                self._set(
                    None,
                    None,
                    "absent",
                    f"no index in {self.dir.root}: build one with `python -m app build-index`",
                )
                return
            try:
                loaded = self.dir.load(version)
                embedder = self._registry.get_ready(loaded.manifest.embedder.name, task="embedder")
                check_embedder(loaded, embedder)
            except (IndexLoadError, ServiceError) as exc:
                message = exc.message if isinstance(exc, ServiceError) else str(exc)
                log.error("index %s refused: %s", version, message)
                self._set(None, None, "refused", message)
                return
            self._set(loaded, embedder, "ready", None)
            log.info(
                "index %s ready: %d photos of %d species, embedder %s",
                version,
                loaded.manifest.n_vectors,
                loaded.manifest.n_species,
                embedder.spec.name,
            )

    def _set(
        self, index: SpeciesIndex | None, embedder: LoadedModel | None, state: IndexState, reason: str | None
    ) -> None:
        self._index, self._embedder, self.state, self.reason = index, embedder, state, reason

    def get(self) -> tuple[SpeciesIndex, LoadedModel]:
        index, embedder = self._index, self._embedder
        if index is None or embedder is None:
            raise IndexUnavailable(
                f"species index is {self.state}: {self.reason}", detail={"state": self.state}
            )
        return index, embedder

    def add(self, features: np.ndarray, labels: list[Label]) -> tuple[SpeciesIndex, SpeciesIndex]:
        """Blocking: appends photos, publishes a new version and serves it. Returns the version
        extended (read under the writer lock: what was really there) and the new one."""
        try:
            with self.dir.writer_lock():
                self.refresh()  # extend what is on disk now, not what this process last saw
                _, embedder = self.get()
                current, extended = add_photos(self.dir, embedder, features, labels)
        except OSError as exc:  # a full or read-only volume: nothing was published
            raise write_error(self.dir.root, exc) from exc
        with self._lock:
            self._seen = extended.manifest.version
            self._set(extended, embedder, "ready", None)
        return current, extended


# A full volume, a quota, a file-size limit: 507, someone must free space; anything else (a
# read-only or forbidden volume) is the index being unavailable for writes.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_error(root: Path, exc: OSError) -> ServiceError:
    """What a failed index write tells the caller; the published version is unchanged either way."""
    message = f"cannot write the index in {root}: {exc.strerror or exc}"
    if exc.errno in _NO_SPACE:
        return InsufficientStorage(
            f"{message}: the photos were not added and the index is unchanged; free space on the "
            "index volume and send them again",
            detail={"state": "no_space", "errno": errno.errorcode.get(exc.errno, str(exc.errno))},
        )
    return IndexUnavailable(message, detail={"state": "read_only"})
