"""What a collection's run has done, in a SQLite file in DIR: each observation's outcome (the
answer, or why it failed), committed as it is made, keyed by the observation's id.

A crash, or ``kill -9``, at any moment loses at most the observations in flight: every
committed outcome is on disk (WAL journal, one transaction per outcome). Running the same
command again reads which ids are done and answers only the rest, so each observation is
written exactly once; the outputs are written from the journal at the end of a run, in the
source's order, and so are the same as one uninterrupted run would write.

The journal also keeps which source and which options made it: a DIR made from another SOURCE,
or with other options that change the answers, is refused rather than mixed.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

JOURNAL = "journal.sqlite"
Status = Literal["done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outcome (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,            -- the observation's place in the source
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    answer TEXT,                     -- the /v1/identify answer (JSON), when done
    error TEXT,                      -- why it failed
    answered_at TEXT NOT NULL        -- ISO 8601 UTC
);
CREATE INDEX IF NOT EXISTS outcome_in_order ON outcome (seq);
"""
LOCK = "journal.lock"


class JournalError(ValueError):
    """DIR cannot hold this run: another source's, other options', or not writable."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    seq: int
    status: Status
    answer: dict[str, Any] | None
    error: str | None
    answered_at: str


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        # One run per DIR: a second would answer the same observations again and rewrite the
        # outputs under the first one's feet. The OS drops the lock when the process dies.
        self._lock = (path.parent / LOCK).open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise JournalError(
                f"another batch is running in {path.parent}: wait for it, or use another --out"
            ) from None
        # The engine writes from its event loop's thread only; check_same_thread stays on.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL under WAL: a committed outcome survives the process being killed (the OS has the
        # write); only a power cut may lose the last commits, which a rerun answers again.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, out: Path, fingerprint: str, options: Mapping[str, object]) -> Journal:
        """The journal in ``out`` (created with it), refused when another source or other options
        made it."""
        try:
            out.mkdir(parents=True, exist_ok=True)
            journal = cls(out / JOURNAL)
        except JournalError:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot write the run's journal in {out}: {exc}") from exc
        wanted = {"fingerprint": fingerprint, "options": json.dumps(dict(options), sort_keys=True)}
        found = dict(journal._db.execute("SELECT key, value FROM run").fetchall())
        if not found or not journal._db.execute("SELECT 1 FROM outcome LIMIT 1").fetchone():
            # Nothing answered yet (a first run, or one refused before its first answer): this
            # run's source and options are the journal's.
            with journal._transaction():
                journal._db.executemany("INSERT OR REPLACE INTO run VALUES (?, ?)", wanted.items())
            return journal
        if found.get("fingerprint") != fingerprint:
            journal.close()
            raise JournalError(
                f"{out} holds a run over another source (or the source changed): use another --out, "
                "or delete it to start over"
            )
        if found.get("options") != wanted["options"]:
            journal.close()
            before = json.loads(found.get("options", "{}"))
            changed = sorted(k for k in {**before, **options} if before.get(k) != options.get(k))
            raise JournalError(
                f"{out} holds a run made with other options ({', '.join(changed)}): give the same options "
                "to resume, or use another --out"
            )
        return journal

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def record(self, id: str, seq: int, answer: dict[str, Any] | None, error: str | None, at: str) -> None:
        """One observation's outcome, committed before this returns (a retried failure replaces
        its earlier row: still one row per observation)."""
        status: Status = "done" if answer is not None else "failed"
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO outcome VALUES (?, ?, ?, ?, ?, ?)",
                (id, seq, status, json.dumps(answer) if answer is not None else None, error, at),
            )

    def statuses(self) -> dict[str, Status]:
        return dict(self._db.execute("SELECT id, status FROM outcome").fetchall())

    def entries(self) -> Iterator[Entry]:
        """Every outcome, in the source's order, read as it is iterated (a large run is never
        held in memory whole)."""
        cursor = self._db.execute(
            "SELECT id, seq, status, answer, error, answered_at FROM outcome ORDER BY seq"
        )
        for id, seq, status, answer, error, at in cursor:
            yield Entry(id, seq, status, json.loads(answer) if answer is not None else None, error, at)

    def close(self) -> None:
        self._db.close()
        self._lock.close()
