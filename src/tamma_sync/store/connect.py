"""Opening the database: SQLAlchemy engine options per dialect, SQLite's tuning, and
pinging PostgreSQL connections that sat idle."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.util import await_only

from tamma_sync.store.bulk import Step, on_sqlite_thread
from tamma_sync.store.rows import json_text

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Rows per index SQLite's ANALYZE samples (`PRAGMA analysis_limit`).
SQLITE_ANALYSIS_ROWS = 1_000
#: Connections to an SQLite file per process. Each is an aiosqlite thread, and threads
#: beyond two fight the event loop for the GIL: at 1,000,000 instances and 16 concurrent
#: requests, 15 connections served 540 pages/s, 4 served 690/s, 2 served 950/s.
SQLITE_CONNECTIONS = 2
#: WAL pages at which a commit through the pool checkpoints the WAL in its own thread
#: (SQLite's `wal_autocheckpoint`, 1,000 by default). The store checkpoints it beside the
#: writes long before (`Database._checkpoint_soon`); this is for whatever writes without
#: the store. At 1,000 a sync's page of 1,000 instances checkpointed in its own commit:
#: half of that commit's time, and a fifth of the initial walk's.
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
#: Page cache of each pool connection, in KiB (SQLite's `cache_size`, 2,000 by default). A
#: sync batch of 5,000 new instances rewrites pages all over the instances' id index and
#: the change log's entity index: with 2 MB the transaction spilled pages into the WAL
#: before its commit and read them back. At 8 MB an initial sync of 100,000 instances
#: took 3 to 5 % less time, for up to 6 MB more per connection.
SQLITE_CACHE_KIB = 8_192
#: A PostgreSQL connection idle in the pool for longer than this is pinged before use.
PING_AFTER_IDLE_SECONDS = 1.0
#: Execution option that marks a connection's transaction as a write (see `_tune_sqlite`).
WRITE_OPTION = "tamma_write"


def open_sql_engine(url: str, *, pool_size: int) -> AsyncEngine:
    """A SQLAlchemy engine (connecting lazily) for an async SQLAlchemy URL, tuned for its
    database."""
    parsed = make_url(url)
    options: dict[str, Any] = {
        "json_serializer": json_text,
        "json_deserializer": orjson.loads,
    }
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            options.update(pool_size=SQLITE_CONNECTIONS, max_overflow=0)
        # Reset by `_tune_sqlite` instead: only a connection left in a transaction.
        sql_engine = create_async_engine(url, pool_reset_on_return=None, **options)
        _tune_sqlite(sql_engine)
        return sql_engine
    # Reads run in autocommit: one round trip per statement instead of BEGIN,
    # statement, ROLLBACK. Writes ask for a transaction.
    sql_engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        isolation_level="AUTOCOMMIT",
        **options,
    )
    _ping_when_idle(sql_engine)
    return sql_engine


def _ping_when_idle(sql_engine: AsyncEngine) -> None:
    """SQLAlchemy's `pool_pre_ping`, for connections that sat idle only.

    A connection handed out is pinged first if it was back in the pool for longer than
    `PING_AFTER_IDLE_SECONDS`; if it does not answer (the database restarted or dropped
    it), every connection opened before is renewed before the request uses one. Under load
    connections go back and forth within milliseconds and skip the round trip, which was
    about a fifth of a page's server CPU. A restart under load fails the statements in
    flight either way, and the first disconnect seen renews the pool the same way."""

    @event.listens_for(sql_engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(sql_engine.sync_engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            sql_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool renews every connection opened before now and hands out a new one.
            raise InvalidatePoolError(str(exc)) from exc


def _tune_sqlite(sql_engine: AsyncEngine) -> None:
    """WAL (checkpointed by the store, `SQLITE_AUTOCHECKPOINT_PAGES`), relaxed fsync, a
    larger page cache (`SQLITE_CACHE_KIB`), a busy timeout, foreign keys, sampled ANALYZE;
    BEGIN IMMEDIATE for writes.

    pysqlite's own transaction handling is switched off so that SQLAlchemy's `begin`
    decides how a transaction starts: a write takes the write lock up front instead of
    upgrading a read lock later, which is what makes SQLite answer "database is locked".
    Reads start no transaction: each statement is its own snapshot, as on PostgreSQL, and
    a BEGIN would cost one more trip to aiosqlite's thread per request.
    """

    @event.listens_for(sql_engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        for pragma in (
            "synchronous=NORMAL",
            "foreign_keys=ON",
            f"wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}",
            f"cache_size=-{SQLITE_CACHE_KIB}",
            # ANALYZE samples this many rows per index: milliseconds at any size, and
            # statistics good enough to choose between indexes (see database.py).
            f"analysis_limit={SQLITE_ANALYSIS_ROWS}",
            # Statement journals in memory: an upsert keeps one (its DO UPDATE may fail
            # midway), and a sync batch's went to a temporary file past 64 KiB: a quarter
            # of the writes a batch of 1,000 updated instances made (such batches are
            # 10 % faster without). Sorts stay in memory too: what SQLite sorts here is at
            # most a page's rows and the rows it skips, and once, a migration's new index
            # (68 MB more for one over 1,000,000 instances).
            "temp_store=MEMORY",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(sql_engine.sync_engine.pool, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
        # What SQLAlchemy's rollback on every return does, for the connections that need it:
        # reads start no transaction, and that rollback cost every read one more trip to
        # aiosqlite's thread (a sixth of a page's time in the store).
        if (
            state.asyncio_safe
            and not state.transaction_was_reset
            and dbapi_connection.driver_connection.in_transaction
        ):
            dbapi_connection.rollback()

    @event.listens_for(sql_engine.sync_engine, "begin")
    def _on_begin(conn: SyncConnection) -> None:
        if conn.get_execution_options().get(WRITE_OPTION, False):
            # One trip to aiosqlite's thread (SQLAlchemy's `exec_driver_sql` takes three).
            driver = conn.connection.driver_connection
            await_only(on_sqlite_thread(driver, conn.dialect, [Step("BEGIN IMMEDIATE", ())]))


def _switch_to_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode=WAL`, retried while another process switches the same new
    database: two connections switching at once each hold a read lock the other's switch
    needs, and SQLite refuses one at once ("database is locked") instead of waiting."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
