"""SQLite's small reads on the event loop's thread (`store/loop_reads.py`): they never
stall the loop, whatever another process or the read itself does."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import sqlalchemy as sa

from tamma_sync.models import DEFAULT_TENANT_ID, InstanceWrite
from tamma_sync.store import Store

T = DEFAULT_TENANT_ID


async def test_a_read_by_key_waits_for_a_locked_sqlite_without_stalling_the_event_loop(
    sqlite_database_url: str,
) -> None:
    """SQLite: a read by key runs on a connection of the event loop's own thread, which
    never waits. While another process holds the database exclusively, the read goes to
    the pool's connections instead, which wait in their threads: the loop keeps serving,
    and the read answers once the lock is gone."""
    writer = Store.from_url(sqlite_database_url)
    await writer.put_instances(T, [InstanceWrite(id="i1", definition_id="wf")])
    await writer.close()
    locker = sqlite3.connect(sqlite_database_url.removeprefix("sqlite+aiosqlite:///"))
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("SELECT count(*) FROM instances").fetchall()
    store = Store.from_url(sqlite_database_url)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        read = asyncio.create_task(store.get_instance(T, "i1"))
        await asyncio.sleep(0.5)
        assert not read.done()
        assert ticks >= 10  # about 50, unless the read blocks the loop
        locker.close()
        found = await asyncio.wait_for(read, 10)
        assert found is not None and found.id == "i1"
    finally:
        ticker.cancel()
        locker.close()
        await store.close()


async def test_a_long_read_leaves_the_event_loop_to_others(sqlite_database_url: str) -> None:
    """SQLite: a read that turns out to take long on the event loop's thread (past its
    budget of SQLite steps) is cut short there and read through the pool, in its own
    thread: the loop keeps serving while it runs, and its answer is whole."""
    store = Store.from_url(sqlite_database_url)
    counting = sa.text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
        "SELECT count(*) FROM c"
    )
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    ticker = asyncio.create_task(tick())
    try:
        started = time.monotonic()
        [(counted,)] = await store._db.read_rows(counting, {})
        took = time.monotonic() - started
    finally:
        ticker.cancel()
        await store.close()
    assert counted == 2_000_000
    # On the loop, the read would be one gap as long as itself.
    assert max(gaps) < took / 2, (max(gaps), took)
