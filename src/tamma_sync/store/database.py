"""The store's core: one database, its serialized write transactions and its reads.

Every write runs in one transaction that also appends to the change log, and only when the
content really changed (compared by content hash). Writes are serialized — an asyncio lock
in the process, `BEGIN IMMEDIATE` on SQLite, a transaction-scoped advisory lock on
PostgreSQL (which a single instance's write sent as one statement takes in it,
`commit_if_unchanged`) — so change sequence numbers are handed out in commit order and a
reader that follows the log by `seq` can never skip a change that commits late.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tamma_sync.models import now_ms
from tamma_sync.store import migrations
from tamma_sync.store.bulk import TableStats
from tamma_sync.store.connect import WRITE_OPTION
from tamma_sync.store.dialect import Dialect
from tamma_sync.store.errors import describe_database_error, is_disk_full
from tamma_sync.store.held_connection import HeldConnections, held_count
from tamma_sync.store.last_statements import one_if_unchanged
from tamma_sync.store.leadership import AdvisoryLeadership, FileLeadership, Leadership
from tamma_sync.store.loop_thread import LoopThreadReads, LoopThreadWrites
from tamma_sync.store.transaction import Transaction

log = logging.getLogger(__name__)

#: Rows a read on SQLite may walk past before its own (an offset) and still run on the
#: event loop's thread: about four steps each, a fifth of `loop_thread.STEP_BUDGET`.
LOOP_SKIP_LIMIT = 2_500
#: Key of the PostgreSQL advisory lock that serializes writers across processes.
WRITE_LOCK_KEY = 0x7A11A5C0
#: Key of the PostgreSQL advisory lock held while migrating, so replicas starting
#: together do not race.
MIGRATION_LOCK_KEY = 0x7A11A5C1
#: SQLite: instances written (change rows appended; at least one per commit) between two
#: checkpoints of the WAL, each started beside the writes by the commit that reaches it
#: (`_checkpoint_soon`): about 600 pages at about 19 per instance written one at a time.
CHECKPOINT_EVERY = 32
#: How long closing waits for the connections still lent out to come back.
CLOSE_WAIT_SECONDS = 5.0
CommitListener = Callable[[int], None]

#: Built once: the lock every PostgreSQL write takes first…
_WRITE_LOCK = sa.select(sa.func.pg_advisory_xact_lock(sa.literal(WRITE_LOCK_KEY, sa.BigInteger)))
#: …sent with its BEGIN in one trip on a held connection (`HeldConnections.transaction`).
_BEGIN_WRITE = (
    f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"
)


class _SharedRead:
    """The pool connection the reads of one response share, checked out by the first that
    needs one."""

    def __init__(self, sql_engine: AsyncEngine) -> None:
        self._sql_engine = sql_engine
        self._conn: AsyncConnection | None = None

    async def connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = self._sql_engine.connect()
            await conn.start()
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


class Database:
    """One database: serialized write transactions, reads, schema and leadership."""

    def __init__(self, sql_engine: AsyncEngine, clock: Callable[[], int] = now_ms) -> None:
        self.sql_engine = sql_engine
        self.clock = clock
        """Now, in epoch ms: what writes are stamped with (`Transaction.now`) and engines'
        liveness is judged by; a test moves it instead of waiting on the wall clock."""
        self.dialect = Dialect(sql_engine.dialect)
        self.is_sqlite = self.dialect.is_sqlite
        self._write_lock = asyncio.Lock()
        self._commit_listeners: list[CommitListener] = []
        self._stats = TableStats()
        self._shared_read: ContextVar[_SharedRead | None] = ContextVar(
            f"tamma_sync_shared_read_{id(self)}", default=None
        )
        self.disk_full = False
        """Whether a write failed for want of room (a full disk) and none committed since."""
        # SQLite's loop-thread connections, for a database in a file of its own.
        path = sql_engine.url.database if self.is_sqlite else None
        if path in (None, "", ":memory:") or path.startswith("file:"):
            path = None
        self._loop_reads = LoopThreadReads(path, sql_engine.dialect) if path else None
        self._loop_writes = LoopThreadWrites(path, sql_engine.dialect) if path else None
        # PostgreSQL's held connections, as many as the pool can lend.
        pool = sql_engine.pool
        held = held_count(pool.size()) if isinstance(pool, sa.pool.QueuePool) else 0
        self._held = HeldConnections(sql_engine, held) if held and not self.is_sqlite else None
        self._checkpoint: asyncio.Task[None] | None = None
        self._written_since_checkpoint = 0
        self._analyze_due: set[str] = set()
        self._analyzing: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        if self._analyzing is not None:
            self._analyzing.cancel()
            await asyncio.gather(self._analyzing, return_exceptions=True)
        for loop_connection in (self._loop_reads, self._loop_writes):
            if loop_connection is not None:
                loop_connection.close()
        if self._held is not None:
            await self._held.close()
        await self._lent_connections_back()
        await self.sql_engine.dispose()

    async def _lent_connections_back(self) -> None:
        """Wait (`CLOSE_WAIT_SECONDS` at most) for the pool's connections still in use. A
        task cancelled at shutdown in the middle of a statement (a stream's check of its
        API key, say) closes its connection itself, after the statement: the event loop must
        outlive that, or aiosqlite's thread ends the statement on a closed loop and raises."""
        pool = self.sql_engine.pool
        if not isinstance(pool, sa.pool.QueuePool):  # an in-memory SQLite: one connection
            return
        deadline = asyncio.get_running_loop().time() + CLOSE_WAIT_SECONDS
        # Polled: the pool tells no one when its last connection comes back.
        while pool.checkedout() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if pool.checkedout():
            log.warning("closing the database with %d connections still in use", pool.checkedout())

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener(last_seq)` after every commit that appended to the change log."""
        self._commit_listeners.append(listener)

    # -- schema ----------------------------------------------------------------------------

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent, safe across replicas);
        then, on SQLite, give the planner statistics if it has none (`_refresh_stats`): a
        database may have grown in processes that never analyzed it, and a migration may
        have made an index that has none yet."""
        upgraded = await self.schema_revision() != migrations.head_revision()
        if upgraded:
            await self._upgrade()
        if self.is_sqlite and (upgraded or not await self._has_sqlite_stats()):
            await self._refresh_stats(["instances"])

    async def _has_sqlite_stats(self) -> bool:
        async with self.sql_engine.connect() as conn:
            found = await conn.execute(
                sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
            )
            if found.first() is None:
                return False
            found = await conn.execute(
                sa.text("SELECT 1 FROM sqlite_stat1 WHERE tbl = 'instances' LIMIT 1")
            )
            return found.first() is not None

    async def _upgrade(self) -> None:
        async with self.sql_engine.connect() as plain_conn:
            conn = await plain_conn.execution_options(**self._write_options)
            # One transaction around every migration, begun before alembic sees the
            # connection: alembic then commits nothing itself, where on SQLite it would
            # commit after each migration and let a process starting at once in midway.
            # On SQLite this BEGIN IMMEDIATE is the lock that process waits on.
            await conn.begin()
            if not self.is_sqlite:
                await conn.execute(
                    sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            try:
                await conn.run_sync(migrations.upgrade_to_head)
                await conn.commit()
            finally:
                if not self.is_sqlite:
                    # A failed migration aborted the transaction: the unlock in it would
                    # fail too, and hide the migration's own error.
                    await conn.rollback()
                    await conn.execute(
                        sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                    await conn.commit()

    async def schema_revision(self) -> str | None:
        """The migration the database is at (None before the first one)."""
        async with self.sql_engine.connect() as conn:
            return await conn.run_sync(migrations.current_revision)

    async def lead(self, name: str) -> Leadership | None:
        """Try to become the one process doing `name` (e.g. syncing a source).

        PostgreSQL: a session advisory lock on a connection kept for the purpose, released
        when the process or its connection dies. SQLite: an exclusive lock on a file beside
        the database. Returns None when another process leads.
        """
        if self.is_sqlite:
            return FileLeadership.acquire(self.sql_engine.url.database, name)
        return await AdvisoryLeadership.acquire(self.sql_engine, name)

    # -- transactions ----------------------------------------------------------------------

    @property
    def _write_options(self) -> dict[str, Any]:
        """Execution options of a write transaction: BEGIN IMMEDIATE on SQLite (see
        `connect`), a real transaction on PostgreSQL (whose reads autocommit)."""
        if self.is_sqlite:
            return {WRITE_OPTION: True}
        return {WRITE_OPTION: True, "isolation_level": "READ COMMITTED"}

    @asynccontextmanager
    async def writing(self, *, single_row: bool = False) -> AsyncIterator[Transaction]:
        """A write transaction (`_transaction`): one that fails for want of room marks the
        database `disk_full`, and the next that commits clears it. `single_row`: the write
        runs driver statements only (`Transaction.run`), as a single instance's does: it
        then runs on a connection of the store's own while that is free (`_begin`)."""
        try:
            async with self._transaction(single_row) as tx:
                yield tx
        except Exception as exc:
            if is_disk_full(exc):
                self.disk_full = True
            raise
        self.disk_full = False

    @asynccontextmanager
    async def _transaction(self, single_row: bool) -> AsyncIterator[Transaction]:
        """One serialized write transaction; change rows are appended just before commit."""
        async with self._write_lock, self._begin(single_row) as tx:
            yield tx
            last_seq = await tx.finish()
        await self._committed(tx, last_seq)

    async def _committed(self, tx: Transaction, last_seq: int | None) -> None:
        """Tell the commit listeners of a committed write, and keep the database's upkeep
        (checkpoints, statistics) up with it."""
        tx.inserted["changes"] += len(tx.pending_changes)
        if last_seq is not None:
            for listener in self._commit_listeners:
                listener(last_seq)
        if self._loop_writes is not None and self._checkpoint_due(tx):  # an SQLite file
            await self._checkpoint_soon()
        grown = self._stats.grown_enough(tx.inserted)
        if self.is_sqlite:
            await self._refresh_stats(grown)
        elif grown:
            self._analyze_soon(grown)

    def unlocked_transaction(self) -> Transaction | None:
        """PostgreSQL: a transaction that only gathers a single row's write, to be sent as
        one statement by `commit_if_unchanged`; None where there is none (SQLite, whose
        write on the loop's thread costs no trips, or a store without held
        connections)."""
        if self._held is None:
            return None
        return Transaction(None, self.dialect, self.clock())

    async def commit_if_unchanged(self, tx: Transaction, stored_revision: int | None) -> bool:
        """Commit the write `tx` gathered as one statement, which takes the write lock
        itself: one trip, where a write transaction takes four (BEGIN with the lock, the
        row's read, its last statements, COMMIT). The write's first row written last
        (`upsert_rows(last=True)`) is its row, as read before `tx` began: of
        `stored_revision`, or none under its key for None. False if it wrote nothing: the
        row changed meanwhile, another writer held the lock (it is not tried while this
        process writes), or the held connections were all busy; the caller then writes in a
        transaction (`writing`), as it would have."""
        if not tx.pending_changes:
            return True  # nothing changed: nothing to write
        if self._write_lock.locked():
            return False  # this process is writing: the lock would be found taken
        step = one_if_unchanged(
            self.dialect,
            WRITE_LOCK_KEY,
            stored_revision,
            tx.last_rows(),
            tx.changes_catalog,
            tx.pending_changes,
        )
        assert self._held is not None, "an unlocked transaction is the held connections'"
        try:
            found = await self._held.rows(step)
        except Exception as exc:
            if is_disk_full(exc):
                self.disk_full = True
            raise
        if not found:
            return False
        self.disk_full = False
        [(last_seq, _)] = found
        await self._committed(tx, int(last_seq))
        return True

    @asynccontextmanager
    async def _begin(self, single_row: bool) -> AsyncIterator[Transaction]:
        """A write transaction, committed when the block ends. A single row's runs on a
        connection of the store's own while that is free (SQLite's `LoopThreadWrites`,
        PostgreSQL's `HeldConnections`), else on one of the pool's."""
        if single_row and self._loop_writes is not None and self._loop_writes.begin():
            try:
                yield Transaction(None, self.dialect, self.clock(), self._loop_writes.run)
                self._loop_writes.commit()
            except BaseException:
                self._loop_writes.rollback()
                raise
            return
        if single_row and self._held is not None:
            async with self._held.transaction(_BEGIN_WRITE) as direct:
                if direct is not None:
                    yield Transaction(None, self.dialect, self.clock(), direct)
                    return
        async with self.sql_engine.connect() as conn:
            write_conn = await conn.execution_options(**self._write_options)
            async with write_conn.begin():
                if not self.is_sqlite:
                    await self.dialect.driver_form(_WRITE_LOCK).rows(write_conn, {})
                yield Transaction(write_conn, self.dialect, self.clock())

    def _checkpoint_due(self, tx: Transaction) -> bool:
        """Whether the WAL is due a checkpoint, `tx` committed: `CHECKPOINT_EVERY`
        instances written since the last one."""
        self._written_since_checkpoint += max(1, len(tx.pending_changes))
        if self._written_since_checkpoint < CHECKPOINT_EVERY:
            return False
        self._written_since_checkpoint = 0
        return True

    async def _checkpoint_soon(self) -> None:
        """Start a passive checkpoint of SQLite's WAL in the pool's thread, which commits
        do not do themselves (`LoopThreadWrites`, `connect.SQLITE_AUTOCHECKPOINT_PAGES`):
        beside the writes that follow, on the other core, where in a commit it held up
        the writer. The write that calls for it waits only for the one before, if that has
        not ended yet: so the WAL holds at most twice as many writes' pages as it would
        with SQLite's own checkpoints."""
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        self._checkpoint = asyncio.create_task(self._checkpoint_wal())

    async def _checkpoint_wal(self) -> None:
        """A passive checkpoint. The writes it follows have committed whatever happens
        here: a checkpoint that fails is logged, and the next one tries again."""
        try:
            async with self.sql_engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except sa.exc.SQLAlchemyError as exc:
            log.warning("checkpointing the WAL failed: %s", describe_database_error(exc))

    def _analyze_soon(self, tables: Sequence[str]) -> None:
        """PostgreSQL: ANALYZE `tables` in a task of its own, beside the writes that follow
        (it locks out no write). Inline, at 100,000 instances it took 130 ms a time, and
        an initial sync waited for each. Tables due meanwhile are analyzed by the same
        task, once each."""
        self._analyze_due.update(tables)
        if self._analyzing is None or self._analyzing.done():
            self._analyzing = asyncio.create_task(self._analyze_due_tables())

    async def _analyze_due_tables(self) -> None:
        while self._analyze_due:
            table = self._analyze_due.pop()
            try:
                await self._refresh_stats([table])
            except sa.exc.SQLAlchemyError as exc:
                # The writes that called for it have committed: the next growth asks again.
                log.warning("analyzing %s failed: %s", table, describe_database_error(exc))

    async def _refresh_stats(self, tables: Sequence[str]) -> None:
        """ANALYZE `tables`, which grew a lot since this process last did. PostgreSQL: during
        an initial sync the planner's row estimates go stale fast (and autovacuum may be off
        or slow), and a stale estimate turns the key lookups of every batch into table
        scans. SQLite keeps no statistics at all until ANALYZE, and plans by guesses: at
        1,000,000 instances it picked indexes that read most of them for pages filtered by
        definition and sub-status, correlation id or activity (sampled: milliseconds)."""
        for table in tables:
            # A write transaction: on SQLite one that would turn from reading to writing
            # midway could be refused at once ("database is locked") while another writes.
            async with self.sql_engine.connect() as plain_conn:
                conn = await plain_conn.execution_options(**self._write_options)
                async with conn.begin():
                    await conn.execute(sa.text(f"ANALYZE {table}"))

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection. Each statement sees one consistent snapshot (READ
        COMMITTED on PostgreSQL, an autocommit read on SQLite), so what must agree — a page
        and its total — is read by one statement."""
        shared = self._shared_read.get()
        if shared is not None:
            yield await shared.connection()
            return
        async with self.sql_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def reading_together(self) -> AsyncIterator[None]:
        """Let the reads awaited inside share one connection: one pool checkout for a
        response made of several small reads, instead of one each (none if each of them
        runs on SQLite's loop-thread connection). The reads must be awaited one after
        another, not gathered."""
        if self._shared_read.get() is not None:
            yield
            return
        shared = _SharedRead(self.sql_engine)
        token = self._shared_read.set(shared)
        try:
            yield
        finally:
            self._shared_read.reset(token)
            await shared.close()

    async def read_rows(
        self, statement: sa.ClauseElement, parameters: Mapping[str, Any], *, skipping: int = 0
    ) -> Sequence[Sequence[Any]]:
        """The rows of a statement compiled once and run through the driver. On SQLite a
        read runs on the event loop's own thread (`LoopThreadReads`) unless it walks past
        more than `LOOP_SKIP_LIMIT` rows before its own (`skipping`: an offset), or turns
        out to take long there; on PostgreSQL on a held connection (`HeldConnections`)
        that no other task is using; else through the pool."""
        driver_sql = self.dialect.driver_form(statement)
        found: Sequence[Sequence[Any]] | None = None
        if self._loop_reads is not None and skipping <= LOOP_SKIP_LIMIT:
            found = self._loop_reads.rows(driver_sql.step(parameters))
        elif self._held is not None:
            found = await self._held.rows(driver_sql.step(parameters))
        if found is not None:
            return found
        async with self.reading() as conn:
            return await driver_sql.rows(conn, parameters)

    async def read_mappings(
        self, statement: sa.ClauseElement, parameters: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """`read_rows` as dicts by column name, JSON columns decoded."""
        rows = await self.read_rows(statement, parameters)
        return self.dialect.driver_form(statement).as_mappings(rows)
