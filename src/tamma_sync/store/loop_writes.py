"""SQLite's single-row writes, run on the event loop's own thread.

One instance written through the API (the .NET service's POST, its PUT that changes
something) is a handful of statements that cost SQLite tens of microseconds, and five
trips to aiosqlite's thread that cost about 0.1 ms each. So, when SQLite's write lock is
free, such a write runs on a connection of the loop's thread: `BEGIN IMMEDIATE`, its
statements, `COMMIT`, with nothing awaited in between. It never waits: the BEGIN is
refused at once while another process holds the write lock, and the write then goes
through the pool, whose connections wait in their threads. Its commits never checkpoint
the WAL (a checkpoint copies pages into the database file and syncs it: milliseconds);
after every `CHECKPOINT_EVERY` of them, the store starts a passive checkpoint in the
pool's thread (`Database._checkpoint_soon`), as a commit in the pool checkpoints once the
WAL holds 1,000 pages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tamma_sync.store.bulk import Step, run_on_cursor, sqlite_error

#: Commits on the loop's thread between two checkpoints of the WAL: about 600 pages at
#: about 19 per instance written, where SQLite's own checkpoint comes at 1,000.
CHECKPOINT_EVERY = 32


class LoopThreadWrites:
    """One SQLite connection for single-row writes on the event loop's thread, opened on
    first use (in that thread)."""

    def __init__(self, path: str, dialect: sa.Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._conn: sqlite3.Connection | None = None
        self._commits = 0

    def begin(self) -> bool:
        """BEGIN IMMEDIATE; False, at once, if another connection holds the write lock."""
        step = Step("BEGIN IMMEDIATE", ())
        try:
            if self._conn is None:
                self._conn = self._open()
            self._conn.execute(step.sql)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False
            raise sqlite_error(step, exc, self._dialect) from exc
        except sqlite3.Error as exc:
            raise sqlite_error(step, exc, self._dialect) from exc
        return True

    def run(self, steps: Sequence[Step]) -> Sequence[Sequence[Any]]:
        """The steps, in the transaction `begin` started; the rows of the last one."""
        assert self._conn is not None and self._conn.in_transaction, "begun first"
        cursor = self._conn.cursor()
        try:
            return run_on_cursor(
                cursor,
                steps,
                sqlite3.Error,
                lambda step, exc: sqlite_error(step, exc, self._dialect),
            )
        finally:
            cursor.close()

    def commit(self) -> bool:
        """COMMIT; whether the WAL is due a checkpoint."""
        self.run([Step("COMMIT", ())])
        self._commits += 1
        return self._commits % CHECKPOINT_EVERY == 0

    def rollback(self) -> None:
        """Undo the transaction, if one is open (a failed COMMIT may have ended it)."""
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self) -> sqlite3.Connection:
        # pysqlite's own transaction handling off: `begin` and `commit` say what happens.
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=0)
        for pragma in ("synchronous=NORMAL", "foreign_keys=ON", "wal_autocheckpoint=0"):
            conn.execute(f"PRAGMA {pragma}")
        return conn
