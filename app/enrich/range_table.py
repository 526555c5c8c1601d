"""The range table the geo prior reads with ``GEO_PRIOR_SOURCE=table``: records per species per
grid cell and month, built offline from a GBIF download (``python -m app build-range``,
app/services/range_build.py), so that no request calls the network.

The file is SQLite, opened read-only and memory-mapped::

    meta(key TEXT PRIMARY KEY, value TEXT)        format, cell_deg, what it was built from, counts
    species(id INTEGER PRIMARY KEY, species_key INTEGER NULL, name TEXT)
    counts(cell_lat, cell_lon, month, species, n) PRIMARY KEY (cell_lat, cell_lon, month, species)
                                                  WITHOUT ROWID

``cell_lat``/``cell_lon`` are the cell's band numbers (``app.enrich.geo.cell_index``: the same
grid as the GBIF source's cells), ``month`` 1-12, or 0 for records without a usable month;
``species`` names a (GBIF speciesKey, normalised species name) pair once, so a cell's rows are
small integers, stored once, in the primary key's order: one cell's counts are one range read.

A lookup sums the cell's rows over the photo's ``season`` (its month and the two beside it,
December next to January; records without a month are left out then, as GBIF's own ``month=``
filter leaves them out) or over every row when no date is known. The answers of the cells read
lately stay in memory (bounded by the species counts they hold), so the next photo in a cell
costs a dictionary lookup. The file is looked at again (its inode, size and mtime) at most once
a second: a table rebuilt in place is read without a restart.

Never raising: a missing file, one that is not a range table, or an SQLite error gives a
``GeoUnavailable`` with the reason (the path is logged, never put in an answer).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

from app.enrich.geo import Cell, GeoUnavailable, NearbyCounts, cell_index, season

log = logging.getLogger(__name__)

FORMAT = "species-id range table 1"
_RECHECK_S = 1.0  # how stale a cached answer may be after the file was replaced
_CACHE_ENTRIES = 500_000  # species counts held in memory over all cached cells (~100 MB at most)
_MMAP_BYTES = 1 << 30

_CELL_SQL = """
SELECT s.species_key, s.name, SUM(c.n) FROM counts AS c JOIN species AS s ON s.id = c.species
WHERE c.cell_lat = ? AND c.cell_lon = ?{months} GROUP BY c.species
"""

CellKey = tuple[int, int, int | None]  # (cell_lat, cell_lon, the photo's month)
_Identity = tuple[int, int, int]  # (inode, size, mtime): a file replaced or rewritten differs


def _identity(path: Path) -> _Identity:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class RangeTable:
    """One range table for the life of a server; thread-safe (lookups run on worker threads)."""

    def __init__(self, path: Path, cell_deg: float, cache_entries: int = _CACHE_ENTRIES) -> None:
        self.path = path
        self._setting_deg = cell_deg
        self._cache_limit = cache_entries
        self._db: sqlite3.Connection | None = None
        self._opened: _Identity | None = None
        self.cell_deg: float | None = None  # the table's own, once open
        self.meta: dict[str, str] = {}
        self._db_lock = threading.Lock()  # one query at a time on the connection
        self._cache_lock = threading.Lock()  # held for dictionary operations only
        self._cache: OrderedDict[CellKey, NearbyCounts] = OrderedDict()
        self._cached_entries = 0
        self._checked = 0.0
        self._said: str | None = None

    def cached(self, lat: float, lon: float, month: int | None) -> NearbyCounts | None:
        """The cell's counts from memory, or None; never touches the disk (an event loop calls
        it). Once a second it answers None, so that a worker thread's ``lookup`` sees whether the
        file was replaced (a stat: disk work, kept off the loop)."""
        size = self.cell_deg
        if size is None:
            return None
        now = time.monotonic()
        if now - self._checked > _RECHECK_S:
            self._checked = now
            return None
        key = (*cell_index(lat, lon, size), month)
        with self._cache_lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
            return found

    def lookup(self, lat: float, lon: float, month: int | None) -> NearbyCounts | GeoUnavailable:
        """Blocking: the cell's counts over the photo's season, read from the file when not in
        memory. ``lat``/``lon``/``month`` are valid (the caller built a ``Cell`` of them)."""
        with self._db_lock:
            problem = self._ensure_open()
            if problem is not None:
                return problem
            assert self._db is not None and self.cell_deg is not None
            lat_i, lon_i = cell_index(lat, lon, self.cell_deg)
            key = (lat_i, lon_i, month)
            with self._cache_lock:
                if (found := self._cache.get(key)) is not None:
                    return found
            months = season(month)
            where = f" AND c.month IN ({', '.join('?' * len(months))})" if months else ""
            try:
                rows = self._db.execute(_CELL_SQL.format(months=where), (lat_i, lon_i, *months)).fetchall()
            except sqlite3.Error as exc:
                self._close()  # reopened by the next lookup: the file may have been replaced
                return self._unavailable(f"the range table could not be read: {exc}")
            by_key: dict[int, int] = {}
            by_name: dict[str, int] = {}
            for species_key, name, n in rows:
                if species_key is not None:
                    by_key[species_key] = by_key.get(species_key, 0) + n
                if name:
                    by_name[name] = by_name.get(name, 0) + n
            counts = NearbyCounts(
                Cell.containing(lat, lon, self.cell_deg, month),
                by_key,
                sum(n for _, _, n in rows),
                None,
                names=by_name,
                source="table",
                months=months,
            )
            self._remember(key, counts)
            return counts

    def close(self) -> None:
        with self._db_lock:
            self._close()

    # -- the file ------------------------------------------------------------------------------

    def _ensure_open(self) -> GeoUnavailable | None:
        """Under ``_db_lock``: the connection to the file as it is now, or why there is none."""
        try:
            identity = _identity(self.path)
        except OSError as exc:
            self._close()
            missing = isinstance(exc, FileNotFoundError)
            return self._unavailable(
                "the range table (GEO_PRIOR_TABLE) is missing: build it with `python -m app build-range`"
                if missing
                else f"the range table (GEO_PRIOR_TABLE) cannot be read: {exc.strerror}"
            )
        if self._db is not None and identity == self._opened:
            return None
        self._close()
        try:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            return self._unavailable(f"the range table (GEO_PRIOR_TABLE) cannot be opened: {exc}")
        try:
            db.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            meta = {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta")}
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, not {FORMAT!r}")
            cell_deg = float(meta["cell_deg"])
            if not (math.isfinite(cell_deg) and 0 < cell_deg <= 90):
                raise ValueError(f"cells of {meta['cell_deg']} degrees")
            db.execute("SELECT species_key, name FROM species LIMIT 1").fetchall()
            db.execute("SELECT cell_lat, cell_lon, month, species, n FROM counts LIMIT 1").fetchall()
        except (sqlite3.Error, KeyError, ValueError) as exc:
            db.close()
            return self._unavailable(
                f"GEO_PRIOR_TABLE is not a range table built by `python -m app build-range` ({exc})"
            )
        if cell_deg != self._setting_deg:
            log.warning(
                "range table %s has cells of %s degrees, GEO_PRIOR_CELL_DEG is %s: using the table's",
                self.path,
                cell_deg,
                self._setting_deg,
            )
        self._db, self._opened, self.cell_deg, self.meta = db, identity, cell_deg, meta
        self._checked = time.monotonic()
        self._said = None
        log.info(
            "range table %s: %s records of %s species in %s cells of %s degrees, built %s from %s",
            self.path,
            meta.get("kept", "?"),
            meta.get("species", "?"),
            meta.get("cells", "?"),
            cell_deg,
            meta.get("built_at", "?"),
            meta.get("source", "?"),
        )
        return None

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db, self._opened, self.cell_deg = None, None, None
        self._forget()

    def _unavailable(self, reason: str) -> GeoUnavailable:
        if reason != self._said:  # once per new reason, not once per photo
            self._said = reason
            log.warning("no geo prior from %s: %s", self.path, reason)
        return GeoUnavailable(reason)

    # -- the answers in memory -------------------------------------------------------------------

    def _remember(self, key: CellKey, counts: NearbyCounts) -> None:
        size = max(len(counts.names), 1)
        with self._cache_lock:
            self._cache[key] = counts
            self._cached_entries += size
            while self._cached_entries > self._cache_limit and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached_entries -= max(len(old.names), 1)

    def _forget(self) -> None:
        with self._cache_lock:
            self._cache.clear()
            self._cached_entries = 0
