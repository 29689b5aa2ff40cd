"""SQLite reads of a few rows by key, run on the event loop's own thread.

Such a read costs SQLite a few microseconds; handed to aiosqlite's thread it costs a pool
checkout and a trip there and back (about 0.2 ms, and under load each trip waits for the
event loop to let go of the GIL). So these reads run on a connection of the loop's thread,
opened per process. It never waits: in WAL mode a read takes no lock a writer holds, and
in the rare moments SQLite refuses it at once (another connection recovering the WAL, say)
`rows` says so and the caller reads through the pool instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tamma_sync.store.bulk import Step, sqlite_error


class LoopThreadReads:
    """One SQLite connection for small reads on the event loop's thread, opened on first use
    (in that thread)."""

    def __init__(self, path: str, dialect: sa.Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._conn: sqlite3.Connection | None = None

    def rows(self, step: Step) -> Sequence[Sequence[Any]] | None:
        """The statement's rows; None if SQLite is busy and the read must go elsewhere."""
        try:
            if self._conn is None:
                self._conn = self._open()
            return self._conn.execute(step.sql, step.values).fetchall()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise sqlite_error(step, exc, self._dialect) from exc
        except sqlite3.Error as exc:
            raise sqlite_error(step, exc, self._dialect) from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self) -> sqlite3.Connection:
        # Autocommit: each statement is its own snapshot, as the pool's reads are. No busy
        # timeout: a read that would wait goes to the pool instead of stalling the loop.
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=0)
        conn.execute("PRAGMA query_only=ON")
        return conn
