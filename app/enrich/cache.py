"""A small response cache in SQLite: survives restarts, keeps stale entries for outages.

Entries past their TTL are not served normally, but are kept so that when the upstream fails
the last good answer can still be given (stale-if-error), flagged as such.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Cached:
    payload: Any
    age_s: float


class ResponseCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by worker threads, serialised by a lock: lookups are tiny.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses "
            "(key TEXT PRIMARY KEY, payload TEXT NOT NULL, stored_at REAL NOT NULL)"
        )
        self._lock = threading.Lock()

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
