"""Taxonomy files, read once and re-read when link-gbif (or build-taxonomy) rewrites them.

The registry only says where a model's taxonomy is (``LoadedModel.taxonomy_path``: link-gbif's
file, or that over the shipped offline NCBI file, ``TaxonomyFiles``); the index keeps its own
beside its versions. This book reads them on first use and again when a file's mtime changes (a
rerun of link-gbif), so no restart or reload is needed for new links. Per label, link-gbif's
line wins over the offline one: GBIF's backbone keys are what the place prior and GBIF's pages
use. A missing file means "none from that file", said once in the log.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from app.enrich.taxonomy import Taxon, load_taxonomy
from app.models.loaded import TaxonomyFiles

log = logging.getLogger(__name__)

Taxonomy = dict[str, Taxon]  # scientific name -> its taxon (GBIF's or NCBI's)


# One empty taxonomy for every model without one: what is derived from a taxonomy is cached by
# the dict's identity (the filter's index, the prior's label match), so a new {} per call would
# rebuild it for every photo. Never mutated.
_NONE: Taxonomy = {}


class TaxonomyBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[int, Taxonomy]] = {}
        # Merged taxonomies by their files' mtimes: the same dict is handed out until a file
        # changes, so what is derived from it per dict (the filter's index) stays cached.
        self._merged: dict[TaxonomyFiles, tuple[tuple[int | None, int | None], Taxonomy]] = {}
        self._warned: set[Path] = set()

    def get(self, where: TaxonomyFiles | Path | None) -> Taxonomy:
        """Blocking (a stat per file, and a read when one changed); cheap when none did."""
        if where is None:
            return _NONE
        if isinstance(where, Path):
            return self._file(where, "run `python -m app link-gbif`")[1]
        linked = self._file(where.linked, None) if where.linked is not None else (None, _NONE)
        offline = (
            self._file(where.offline, "run `python -m app build-taxonomy`")
            if where.offline is not None
            else (None, _NONE)
        )
        stamp = (linked[0], offline[0])
        known = self._merged.get(where)
        if known is not None and known[0] == stamp:
            return known[1]
        # One file alone is handed out as read: no copy per model of the same dict.
        merged = {**offline[1], **linked[1]} if linked[1] and offline[1] else linked[1] or offline[1]
        with self._lock:
            self._merged[where] = (stamp, merged)
        return merged

    def _file(self, path: Path, hint: str | None) -> tuple[int | None, Taxonomy]:
        """(mtime, taxonomy) of one file; (None, {}) when it is missing, said once when ``hint``
        says how to make it (link-gbif's file beside a shipped one is optional: not said)."""
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            if hint is not None and path not in self._warned:
                self._warned.add(path)
                log.warning("taxonomy %s missing: results carry none from it; %s", path, hint)
            return None, _NONE
        known = self._loaded.get(path)
        if known is not None and known[0] == mtime:
            return known
        with self._lock:
            taxonomy = load_taxonomy(path)
            self._loaded[path] = (mtime, taxonomy)
        return mtime, taxonomy


INDEX_TAXONOMY_FILE = "gbif_taxonomy.jsonl"  # beside an index's versions: kept across versions


def index_taxonomy_path(index_root: Path) -> Path:
    return index_root / INDEX_TAXONOMY_FILE
