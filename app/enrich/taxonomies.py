"""Taxonomy files, read once and re-read when link-gbif rewrites them.

The registry only says where a model's taxonomy file is (``LoadedModel.taxonomy_path``); the
index keeps its own beside its versions. This book reads either on first use and again when the
file's mtime changes (a rerun of link-gbif), so no restart or reload is needed for new links.
A missing file means "no taxonomy", said once in the log.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from app.enrich.taxonomy import Taxon, load_taxonomy

log = logging.getLogger(__name__)

Taxonomy = dict[str, Taxon]  # scientific name -> GBIF taxon


class TaxonomyBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[int, Taxonomy]] = {}
        self._warned: set[Path] = set()

    def get(self, path: Path | None) -> Taxonomy:
        """Blocking (a stat, and a read when the file changed); cheap when it did not."""
        if path is None:
            return {}
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            if path not in self._warned:
                self._warned.add(path)
                log.warning("taxonomy %s missing: results carry none; run `python -m app link-gbif`", path)
            return {}
        known = self._loaded.get(path)
        if known is not None and known[0] == mtime:
            return known[1]
        with self._lock:
            taxonomy = load_taxonomy(path)
            self._loaded[path] = (mtime, taxonomy)
        return taxonomy


INDEX_TAXONOMY_FILE = "gbif_taxonomy.jsonl"  # beside an index's versions: kept across versions


def index_taxonomy_path(index_root: Path) -> Path:
    return index_root / INDEX_TAXONOMY_FILE
