"""A small response cache in SQLite: survives restarts, keeps stale entries for outages.

Entries past their TTL are not served normally, but are kept so that when the upstream fails
the last good answer can still be given (stale-if-error), flagged as such.

The cache is never a reason for a request to fail: a file that is not (or no longer) a valid
SQLite database, found at start or while serving, is moved aside (``NAME.corrupt``) and rebuilt
empty, with a warning; the request that found it is answered as a miss. Any other SQLite error
on a read or a write is logged and treated as a miss / a write skipped. A location that cannot
be written at all falls back to a cache in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# SQLite's primary result codes for a damaged file: "database disk image is malformed" and
# "file is not a database".
_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def _is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _CORRUPT


@dataclass(frozen=True, slots=True)
class Cached:
    payload: Any
    age_s: float


class ResponseCache:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self.path: Path | None = path
        self.rebuilt = 0  # times a corrupt file was replaced by a new one
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open_file(path)
        except (OSError, sqlite3.Error) as exc:
            self._to_memory(path, exc)

    def _open_file(self, path: Path) -> sqlite3.Connection:
        try:
            return self._open(str(path))
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                raise
            self._set_aside(path, exc)
            return self._open(str(path))

    def _to_memory(self, path: Path, exc: Exception) -> None:
        # A read-only volume must not stop the service: answers are then cached in memory.
        log.warning("response cache %s unusable (%s); caching in memory until restart", path, exc)
        self.path = None
        self._db = self._open(":memory:")

    @staticmethod
    def _open(where: str) -> sqlite3.Connection:
        # One connection shared by worker threads, serialised by a lock: lookups are tiny.
        db = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
        try:
            if where != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS responses "
                "(key TEXT PRIMARY KEY, payload TEXT NOT NULL, stored_at REAL NOT NULL)"
            )
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, path: Path, exc: sqlite3.Error) -> None:
        """Moves a corrupt database (and its WAL, which must not be replayed onto a new file)
        out of the way; the last corrupt copy is kept as ``NAME.corrupt`` for a post-mortem."""
        log.warning(
            "response cache %s is corrupt (%s): moved to %s.corrupt and rebuilt empty", path, exc, path.name
        )
        path.replace(path.with_name(path.name + ".corrupt"))
        for suffix in ("-wal", "-shm", "-journal"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        self.rebuilt += 1

    def _rebuild(self, exc: sqlite3.Error) -> None:
        """Called under the lock when the open file turned out corrupt while serving."""
        path = self.path
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        if path is None:  # an in-memory database cannot be damaged on disk; start it afresh
            self._db = self._open(":memory:")
            return
        try:
            self._set_aside(path, exc)
            self._db = self._open(str(path))
        except (OSError, sqlite3.Error) as again:
            self._to_memory(path, again)

    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        if _is_corrupt(exc):
            self._rebuild(exc)
        else:
            log.warning("response cache %s failed (%s); answering without it", what, exc)

    def get(self, key: str) -> Cached | None:
        """The cached answer, or None (absent, or the cache unreadable: a miss, never an error)."""
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT payload, stored_at FROM responses WHERE key = ?", (key,)
                ).fetchone()
                if row is None:
                    return None
                payload = json.loads(row[0])
            except sqlite3.Error as exc:
                self._failed("read", exc)
                return None
            except ValueError as exc:  # a row whose JSON was damaged: drop it
                # The key may hold an occurrence query's cell: where someone was, not for the log.
                log.warning("a response cache entry was unreadable (%s); dropped", exc)
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("DELETE FROM responses WHERE key = ?", (key,))
                return None
        return Cached(payload, time.time() - row[1])

    def put(self, key: str, payload: Any) -> None:
        """Stores an answer; a cache that cannot be written is skipped (logged), never an error."""
        text = json.dumps(payload)
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._db.execute(
                        "INSERT OR REPLACE INTO responses (key, payload, stored_at) VALUES (?, ?, ?)",
                        (key, text, time.time()),
                    )
                    return
                except sqlite3.Error as exc:
                    self._failed("write", exc)
                    if not _is_corrupt(exc) or attempt == 2:
                        return  # rebuilt: store it once in the new file

    def close(self) -> None:
        with self._lock:
            self._db.close()
