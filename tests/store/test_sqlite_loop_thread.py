"""SQLite's small reads and single-row writes on the event loop's thread
(`store/loop_thread.py`): they never stall the loop, whatever
another process or the statement itself does, and a write is whole or not at all; the
WAL is checkpointed beside the writes, theirs and the pool's, not in their commits."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from tamma_sync.models import DEFAULT_TENANT_ID, InstanceWrite
from tamma_sync.store import Store

T = DEFAULT_TENANT_ID
R = TypeVar("R")


async def _still_waiting_after_half_a_second(operation: Coroutine[Any, Any, R]) -> asyncio.Task[R]:
    """Start `operation`: half a second later it must still be waiting, and the event loop
    must have kept running meanwhile (a 10 ms ticker ticks about 50 times, unless the
    operation blocks the loop)."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    task = asyncio.create_task(operation)
    try:
        await asyncio.sleep(0.5)
    finally:
        ticker.cancel()
    assert not task.done()
    assert ticks >= 10
    return task


def _hold(database_url: str, how: str) -> sqlite3.Connection:
    """Another process's connection to the database, holding it as `how` says."""
    holder = sqlite3.connect(database_url.removeprefix("sqlite+aiosqlite:///"))
    holder.isolation_level = None
    holder.execute(how)
    return holder


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
    try:
        read = await _still_waiting_after_half_a_second(store.get_instance(T, "i1"))
        locker.close()
        found = await asyncio.wait_for(read, 10)
        assert found is not None and found.id == "i1"
    finally:
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


async def test_a_write_waits_for_another_writer_without_stalling_the_event_loop(
    sqlite_database_url: str,
) -> None:
    """A single instance's write runs on the loop's thread only while SQLite's write lock
    is free: while another process holds it, the write goes to the pool and waits there,
    the loop keeps serving, and the write lands once the lock is gone."""
    store = Store.from_url(sqlite_database_url)
    await store.create_instance(T, InstanceWrite(id="i0", definition_id="wf"))
    holder = _hold(sqlite_database_url, "BEGIN IMMEDIATE")
    try:
        write = await _still_waiting_after_half_a_second(
            store.create_instance(T, InstanceWrite(id="i1", definition_id="wf"))
        )
        holder.rollback()
        written = await asyncio.wait_for(write, 10)
        assert written.id == "i1"
        assert await store.get_instance(T, "i1") is not None
    finally:
        holder.close()
        await store.close()


async def test_a_write_that_fails_midway_leaves_nothing(sqlite_database_url: str) -> None:
    """A single instance's write whose change row is refused (a trigger here) is undone
    whole: no instance, no count, nothing in the change log; once allowed, it lands."""
    store = Store.from_url(sqlite_database_url)
    try:
        await store.create_instance(T, InstanceWrite(id="i0", definition_id="wf"))
        refusing = _hold(
            sqlite_database_url,
            "CREATE TRIGGER no_changes BEFORE INSERT ON changes "
            "BEGIN SELECT RAISE(ABORT, 'no room for changes'); END",
        )
        with pytest.raises(sa.exc.DBAPIError, match="no room for changes"):
            await store.create_instance(T, InstanceWrite(id="i1", definition_id="wf"))
        assert await store.get_instance(T, "i1") is None
        assert sum((await store.catalog_totals(T)).instances.values()) == 1
        assert [change.entity_id for change in await store.changes_after(0, limit=10)] == ["i0"]
        refusing.execute("DROP TRIGGER no_changes")
        refusing.close()
        await store.create_instance(T, InstanceWrite(id="i1", definition_id="wf"))
        assert sum((await store.catalog_totals(T)).instances.values()) == 2
    finally:
        await store.close()


async def test_writes_on_the_loops_thread_keep_the_wal_checkpointed(
    sqlite_database_url: str,
) -> None:
    """Commits on the loop's thread never checkpoint the WAL themselves (milliseconds of
    copying and syncing); the store checkpoints it in the pool's thread instead, so the
    WAL does not grow with every write: 400 instances write about 24 MB of WAL frames."""
    store = Store.from_url(sqlite_database_url)
    try:
        for number in range(400):
            await store.create_instance(T, InstanceWrite(id=f"i{number}", definition_id="wf"))
        await asyncio.sleep(0.2)  # the last checkpoint, in the pool's thread
        wal = sqlite_database_url.removeprefix("sqlite+aiosqlite:///") + "-wal"
        assert await asyncio.to_thread(os.path.getsize, wal) < 8_000_000
        assert sum((await store.catalog_totals(T)).instances.values()) == 400
    finally:
        await store.close()


async def test_batches_through_the_pool_are_checkpointed_beside_the_writes(
    sqlite_database_url: str,
) -> None:
    """A batch's commit through the pool does not checkpoint the WAL itself (at SQLite's
    default of 1,000 pages, a sync's page of 1,000 instances did, in its own commit), and
    SQLite's own checkpoint comes only at `SQLITE_AUTOCHECKPOINT_PAGES`: the store
    checkpoints the WAL beside the batches that follow. 10,000 instances in batches of
    500 write about 3,000 pages; without those checkpoints all of them stay in the WAL and
    the database file holds none (176 kB)."""
    store = Store.from_url(sqlite_database_url)
    try:
        for batch in range(20):
            writes = [
                InstanceWrite(id=f"i{batch}-{number}", definition_id=f"wf{number % 7}")
                for number in range(500)
            ]
            await store.put_instances(T, writes)
        await asyncio.sleep(0.2)  # the last checkpoint, in the pool's thread
        database = sqlite_database_url.removeprefix("sqlite+aiosqlite:///")
        assert await asyncio.to_thread(os.path.getsize, database) > 4_000_000
        assert sum((await store.catalog_totals(T)).instances.values()) == 10_000
    finally:
        await store.close()
