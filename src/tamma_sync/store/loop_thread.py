"""SQLite's small reads and single-row writes, run on the event loop's own thread.

A read of a few rows by key, a first page or the dashboard's kept counts, and the handful
of statements of one instance's write, cost SQLite tens of microseconds. Handed to
aiosqlite's thread, each costs a pool checkout and a trip there and back: about 0.1 to
0.2 ms one at a time, and far more under load, where each trip waits for the event loop to
let go of the GIL (16 concurrent clients read first pages of 100,000 instances 1.6 to 1.8
times as fast on the loop's thread). So each process keeps two more connections, opened in
the loop's thread, and neither ever stalls it:

- `LoopThreadReads`: in WAL mode a read takes no lock a writer holds, and it waits for
  none (when SQLite refuses one at once — another process holding the database
  exclusively, or recovering its WAL — `rows` says so); a read that runs past
  `STEP_BUDGET` of SQLite's virtual machine steps is interrupted. Either way the caller
  reads through the pool instead, whose connections wait and work in their own threads.
- `LoopThreadWrites`: a single-row write runs `BEGIN IMMEDIATE`, its statements and
  `COMMIT` with nothing awaited in between; the BEGIN is refused at once while another
  process holds the write lock, and the write then goes through the pool. Its commits
  never checkpoint the WAL (a checkpoint copies pages into the database file and syncs it:
  milliseconds): the store checkpoints it in the pool's thread, as it does after the
  pool's own commits (`Database._checkpoint_soon`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tamma_sync.store.bulk import Step, run_on_cursor, sqlite_error

#: Virtual machine steps a read may take on the loop's thread (about a millisecond); one
#: that needs more is interrupted and read through the pool. At 100,000 instances a first
#: page of 50 with its total takes about 1,600 steps, a page walking past 100,000 index
#: entries 400,000 (8 ms).
STEP_BUDGET = 50_000
#: How often (in steps) SQLite checks the budget.
_STEPS_PER_CHECK = 1_000
#: What makes SQLite refuse at once what the pool can still do (primary result codes).
_ELSEWHERE = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT)


class _LoopThreadConnection:
    """One SQLite connection of the event loop's thread, opened on first use (in that
    thread). Autocommit as far as pysqlite goes; no busy timeout: what would wait goes to
    the pool instead."""

    _PRAGMAS: tuple[str, ...] = ()

    def __init__(self, path: str, dialect: sa.Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._conn: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _execute(self, step: Step) -> Sequence[Sequence[Any]] | None:
        """The statement's rows; None if SQLite refuses it at once (`_ELSEWHERE`)."""
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

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=0)
        for pragma in self._PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
        return conn


class LoopThreadReads(_LoopThreadConnection):
    """Small reads, each its own snapshot, as the pool's reads are."""

    _PRAGMAS = ("query_only=ON",)

    def __init__(self, path: str, dialect: sa.Dialect) -> None:
        super().__init__(path, dialect)
        self._checks_left = 0

    def rows(self, step: Step) -> Sequence[Sequence[Any]] | None:
        """The statement's rows; None if SQLite is busy or the read is over the budget: it
        must go elsewhere."""
        self._checks_left = STEP_BUDGET // _STEPS_PER_CHECK
        return self._execute(step)

    def _open(self) -> sqlite3.Connection:
        conn = super()._open()
        conn.set_progress_handler(self._over_budget, _STEPS_PER_CHECK)
        return conn

    def _over_budget(self) -> bool:
        """SQLite's progress handler: True interrupts the statement."""
        self._checks_left -= 1
        return self._checks_left < 0


class LoopThreadWrites(_LoopThreadConnection):
    """Single-row writes, durable as the pool's are (WAL, `synchronous=NORMAL`)."""

    _PRAGMAS = ("synchronous=NORMAL", "foreign_keys=ON", "wal_autocheckpoint=0")

    def begin(self) -> bool:
        """BEGIN IMMEDIATE; False, at once, if another connection holds the write lock."""
        return self._execute(Step("BEGIN IMMEDIATE", ())) is not None

    async def run(self, steps: Sequence[Step]) -> Sequence[Sequence[Any]]:
        """The steps, in the transaction `begin` started; the rows of the last one. Nothing
        is awaited: the loop's thread runs them at once."""
        return self._run(steps)

    def _run(self, steps: Sequence[Step]) -> Sequence[Sequence[Any]]:
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

    def commit(self) -> None:
        self._run([Step("COMMIT", ())])

    def rollback(self) -> None:
        """Undo the transaction, if one is open (a failed COMMIT may have ended it)."""
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
