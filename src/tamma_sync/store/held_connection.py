"""PostgreSQL's small reads and single-row writes, on connections held out of the pool.

Through SQLAlchemy a statement costs a pool checkout and return, a greenlet switch and the
asyncpg adapter's cursor: about 0.2 ms of CPU for a read by key whose round trip takes
0.07 ms, and a single instance's write (BEGIN, lock, lookup, row, last statements, COMMIT)
paid it six times. So each process keeps some pool connections checked out
(`HeldConnections`) and runs those reads and writes on a free one's asyncpg connection
directly; a task that finds them all in use goes through the pool as before. A write
transaction on one sends BEGIN and the write lock as one trip; a single instance's write is
most often one autocommit statement (`Database.commit_if_unchanged`), run as a read is.

The first is checked out by the first read, the others only as concurrent tasks need them.
Under load a held connection stays busy until its task has its turn on the event loop
again, long after the round trip: with four held, 63 % of a dashboard summary's reads (four
a request, at concurrency 16) found them all in use. It took 1,050 to 1,090 requests/s
with ten held, 700 to 1,060 with four and 710 to 860 with one; a first page, 1,350 to 1,510
against 1,240 to 1,390 with four.

It answers as the pool does: errors are raised as SQLAlchemy raises them
(`bulk.adapter_error`), and a connection found dead is invalidated (the next use checks
out another). A read that finds it dead, or a write whose BEGIN does, nothing having run,
goes to the pool instead. One that sat idle for `PING_AFTER_IDLE_SECONDS` is pinged first,
as the pool pings its own (`connect._ping_when_idle`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tamma_sync.store.bulk import Run, Step, adapter_error
from tamma_sync.store.connect import PING_AFTER_IDLE_SECONDS

#: Connections held out of the pool: half of it, at most this many.
MOST_HELD = 16


def held_count(pool_size: int) -> int:
    """How many connections a pool of `pool_size` lends to be held: none from a pool of
    one (its one connection is the pool's), then half of it, `MOST_HELD` at most."""
    return min(MOST_HELD, pool_size // 2)


class HeldConnections:
    """Up to `count` pool connections kept checked out; a statement or transaction takes
    the first that no other task is using, checked out when first taken."""

    def __init__(self, sql_engine: AsyncEngine, count: int) -> None:
        self._all = [HeldConnection(sql_engine) for _ in range(count)]

    def _free(self) -> HeldConnection | None:
        return next((held for held in self._all if not held.in_use), None)

    async def close(self) -> None:
        for held in self._all:
            await held.close()

    async def rows(self, step: Step) -> Sequence[Sequence[Any]] | None:
        """`HeldConnection.rows` on a free one; None if none is free."""
        held = self._free()
        return None if held is None else await held.rows(step)

    @asynccontextmanager
    async def transaction(self, begin: str) -> AsyncIterator[Run | None]:
        """`HeldConnection.transaction` on a free one; yields None if none is free."""
        held = self._free()
        if held is None:
            yield None
            return
        async with held.transaction(begin) as run:
            yield run


class HeldConnection:
    """One pool connection kept checked out, used by one task at a time."""

    def __init__(self, sql_engine: AsyncEngine) -> None:
        self._sql_engine = sql_engine
        self._conn: AsyncConnection | None = None
        self._in_use = False
        self._last_used = 0.0

    @property
    def in_use(self) -> bool:
        return self._in_use

    async def close(self) -> None:
        """Give the connection back to the pool (its owner then disposes of the pool)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def rows(self, step: Step) -> Sequence[Sequence[Any]] | None:
        """The statement's rows (it runs alone, autocommit); None while another task uses
        the connection, or if it turned out dead (discarded): the pool reads it instead."""
        if self._in_use:
            return None
        async with self._using() as run:
            try:
                return await run([step])
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    return None
                raise

    @asynccontextmanager
    async def transaction(self, begin: str) -> AsyncIterator[Run | None]:
        """A transaction started by the script `begin` (one trip: BEGIN and what must
        follow it at once), yielding what runs its statements; committed when the block
        ends, rolled back if it raises. Yields None, having started nothing, while another
        task uses the connection or if it turned out dead."""
        if self._in_use:
            yield None
            return
        async with self._using() as run:
            if await self._began(begin):
                try:
                    yield run
                    await self._script("COMMIT")
                except BaseException:
                    await self._roll_back()
                    raise
                return
        yield None  # found dead before anything ran: the pool's turn

    async def _began(self, begin: str) -> bool:
        """Run the script `begin`; False if the connection turned out dead (it is
        discarded, and nothing ran)."""
        try:
            await self._script(begin)
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                return False
            await self._roll_back()
            raise
        except BaseException:
            await self._roll_back()
            raise
        return True

    @asynccontextmanager
    async def _using(self) -> AsyncIterator[Run]:
        self._in_use = True
        try:
            await self._ready()
            yield self._run
        finally:
            self._in_use = False
            self._last_used = time.monotonic()

    async def _ready(self) -> None:
        """Check a connection out if none is held; ping one that sat idle, and replace it
        if it does not answer."""
        idle = time.monotonic() - self._last_used > PING_AFTER_IDLE_SECONDS
        if self._conn is not None and idle:
            try:
                await self._driver().execute("SELECT 1")
            except Exception:
                await self._discard()
        if self._conn is None:
            conn = self._sql_engine.connect()
            await conn.start()
            self._conn = conn

    def _driver(self) -> Any:
        """The held connection's asyncpg connection."""
        assert self._conn is not None and self._conn.sync_connection is not None, "ready"
        return self._conn.sync_connection.connection.driver_connection

    async def _run(self, steps: Sequence[Step]) -> Sequence[Sequence[Any]]:
        """Run statements in order (executemany for `many`); the rows of the last one."""
        driver = self._driver()
        rows: Sequence[Sequence[Any]] = []
        for step in steps:
            try:
                if step.many:
                    await driver.executemany(step.sql, step.values)
                    rows = []
                else:
                    rows = await driver.fetch(step.sql, *step.values)
            except Exception as exc:
                raise await self._as_sqlalchemy_error(step, exc) from exc
        return rows

    async def _script(self, sql: str) -> None:
        """Statements without values, in one trip (PostgreSQL's simple query protocol)."""
        try:
            await self._driver().execute(sql)
        except Exception as exc:
            raise await self._as_sqlalchemy_error(Step(sql, ()), exc) from exc

    async def _as_sqlalchemy_error(self, step: Step, exc: Exception) -> Exception:
        """`exc` as SQLAlchemy raises it (`bulk.adapter_error`); the connection is
        discarded if it is dead."""
        assert self._conn is not None and self._conn.sync_connection is not None, "in use"
        sync_conn = self._conn.sync_connection
        dbapi_connection = sync_conn.connection.dbapi_connection
        error, dead = adapter_error(sync_conn.dialect, dbapi_connection, step, exc)
        if dead:
            await self._discard(exc)
        return error

    async def _roll_back(self) -> None:
        """End a failed transaction; a connection that cannot (dead, or interrupted in the
        middle of a statement) is discarded."""
        if self._conn is None:
            return
        try:
            await self._driver().execute("ROLLBACK")
        except BaseException:
            await self._discard()

    async def _discard(self, reason: BaseException | None = None) -> None:
        """Invalidate the held connection: the next use checks out another."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.invalidate(reason)
