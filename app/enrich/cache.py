"""A small response cache in SQLite: survives restarts, keeps stale entries for outages.

Entries past their TTL are not served normally, but are kept so that when the upstream fails
the last good answer can still be given (stale-if-error), flagged as such.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cached:
    payload: Any
    age_s: float


class ResponseCache:
    def __init__(self, path: Path) -> None:
        self.path: Path | None = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open(str(path))
        except (OSError, sqlite3.Error) as exc:
            # A read-only volume must not stop the service: answers are then cached in memory.
            log.warning("response cache %s unusable (%s); caching in memory until restart", path, exc)
            self.path = None
            self._db = self._open(":memory:")
        self._lock = threading.Lock()

    @staticmethod
    def _open(where: str) -> sqlite3.Connection:
        # One connection shared by worker threads, serialised by a lock: lookups are tiny.
        db = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
        if where != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS responses "
            "(key TEXT PRIMARY KEY, payload TEXT NOT NULL, stored_at REAL NOT NULL)"
        )
        return db

    def get(self, key: str) -> Cached | None:
        with self._lock:
            row = self._db.execute(
                "SELECT payload, stored_at FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return Cached(json.loads(row[0]), time.time() - row[1])

    def put(self, key: str, payload: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, payload, stored_at) VALUES (?, ?, ?)",
                (key, json.dumps(payload), time.time()),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
