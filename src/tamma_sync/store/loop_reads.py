"""SQLite's small reads, run on the event loop's own thread.

A read of a few rows by key, a first page or the dashboard's kept counts costs SQLite tens
of microseconds; handed to aiosqlite's thread it costs a pool checkout and a trip there and
back (about 0.2 ms sequentially, and far more under load, where each trip waits for the
event loop to let go of the GIL: 16 concurrent clients read first pages of 100,000
instances 1.8 times as fast on the loop's thread). So these reads run on a connection of
the loop's thread, opened per process, and never stall it: in WAL mode a read takes no lock
a writer holds and waits for none (when SQLite refuses one at once — another process
holding the database exclusively, or recovering its WAL — `rows` says so), and a read
that runs past `STEP_BUDGET` of SQLite's virtual machine steps is interrupted. Either way
the caller reads through the pool instead, whose connections wait and work in their own
threads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tamma_sync.store.bulk import Step, sqlite_error

#: Virtual machine steps a read may take on the loop's thread (about a millisecond); one
#: that needs more is interrupted and read through the pool. At 100,000 instances a first
#: page of 50 with its total takes about 1,600 steps, a page walking past 100,000 index
#: entries 400,000 (8 ms).
STEP_BUDGET = 50_000
#: How often (in steps) SQLite checks the budget.
_STEPS_PER_CHECK = 1_000


#: What makes SQLite refuse a read here that the pool can still do (primary result codes).
_ELSEWHERE = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT)


class LoopThreadReads:
    """One SQLite connection for small reads on the event loop's thread, opened on first use
    (in that thread)."""

    def __init__(self, path: str, dialect: sa.Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._conn: sqlite3.Connection | None = None
        self._checks_left = 0

    def rows(self, step: Step) -> Sequence[Sequence[Any]] | None:
        """The statement's rows; None if SQLite is busy or the read is over the budget: it
        must go elsewhere."""
        self._checks_left = STEP_BUDGET // _STEPS_PER_CHECK
        try:
            if self._conn is None:
                self._conn = self._open()
            return self._conn.execute(step.sql, step.values).fetchall()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in _ELSEWHERE:  # extended codes too
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
        conn.set_progress_handler(self._over_budget, _STEPS_PER_CHECK)
        return conn

    def _over_budget(self) -> bool:
        """SQLite's progress handler: True interrupts the statement."""
        self._checks_left -= 1
        return self._checks_left < 0
