"""PostgreSQL's small reads and single-row writes on the connections each process holds out
of the pool (`store/held_connection.py`): a write there is whole or not at all, even when
it is cancelled, and a task that finds the connection in use is served by the pool."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import sqlalchemy as sa

from tamma_sync.models import DEFAULT_TENANT_ID, InstancePatch, InstanceWrite
from tamma_sync.store import Store, instances
from tamma_sync.store.connect import PING_AFTER_IDLE_SECONDS
from tamma_sync.store.database import WRITE_LOCK_KEY
from tamma_sync.store.pages import InstanceQuery
from tests.support.mirror import counted_by_definition

T = DEFAULT_TENANT_ID


def _dsn(database_url: str) -> str:
    return sa.make_url(database_url).set(drivername="postgresql").render_as_string(False)


async def test_a_write_refused_midway_leaves_nothing_and_the_next_one_lands(
    postgres_database_url: str,
) -> None:
    """A single instance's write whose change row is refused (a trigger here) is rolled
    back whole: no instance, no count, nothing in the change log. The held connection is
    left out of the failed transaction: the next write lands."""
    store = Store.from_url(postgres_database_url)
    other = await asyncpg.connect(_dsn(postgres_database_url))
    try:
        await store.create_instance(T, InstanceWrite(id="i0", definition_id="wf"))
        await other.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'no room for changes'; END $$;"
            "CREATE TRIGGER no_changes BEFORE INSERT ON changes "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
        with pytest.raises(sa.exc.DBAPIError, match="no room for changes"):
            await store.create_instance(T, InstanceWrite(id="i1", definition_id="wf"))
        assert await store.get_instance(T, "i1") is None
        assert sum((await store.catalog_totals(T)).instances.values()) == 1
        assert [change.entity_id for change in await store.changes_after(0, limit=10)] == ["i0"]
        await other.execute("DROP TRIGGER no_changes ON changes")
        await store.create_instance(T, InstanceWrite(id="i1", definition_id="wf"))
        assert sum((await store.catalog_totals(T)).instances.values()) == 2
    finally:
        await other.close()
        await store.close()


async def test_a_write_cancelled_while_it_waits_leaves_nothing_and_reads_go_on(
    postgres_database_url: str,
) -> None:
    """While another process holds the write lock, a write waits for it on the held
    connection; reads meanwhile are served by the pool. Cancelled there (a request that
    timed out), the write leaves nothing, and the writes after it land."""
    store = Store.from_url(postgres_database_url)
    other = await asyncpg.connect(_dsn(postgres_database_url))
    try:
        await store.create_instance(T, InstanceWrite(id="i0", definition_id="wf"))
        await other.execute(f"SELECT pg_advisory_lock({WRITE_LOCK_KEY})")
        waiting = asyncio.create_task(
            store.create_instance(T, InstanceWrite(id="i1", definition_id="wf"))
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        found = await asyncio.wait_for(store.get_instance(T, "i0"), timeout=5)
        assert found is not None
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await other.execute(f"SELECT pg_advisory_unlock({WRITE_LOCK_KEY})")
        await asyncio.wait_for(
            store.create_instance(T, InstanceWrite(id="i2", definition_id="wf")), timeout=5
        )
        assert await store.get_instance(T, "i1") is None
        assert await store.get_instance(T, "i2") is not None
        assert sum((await store.catalog_totals(T)).instances.values()) == 2
        assert [change.entity_id for change in await store.changes_after(0, limit=10)] == [
            "i0",
            "i2",
        ]
    finally:
        await other.close()
        await store.close()


async def test_a_pool_of_one_connection_holds_none_back(postgres_database_url: str) -> None:
    """With a pool of one connection (`TAMMA_SYNC_DATABASE_POOL_SIZE=1`) the store holds
    none out of it: a batch write, which needs the pool, does not wait for one."""
    store = Store.from_url(postgres_database_url, pool_size=1)
    try:
        await store.create_instance(T, InstanceWrite(id="i0", definition_id="wf"))
        assert await store.get_instance(T, "i0") is not None
        batch = [InstanceWrite(id=f"i{n}", definition_id="wf") for n in range(1, 4)]
        await asyncio.wait_for(store.put_instances(T, batch), timeout=5)
        assert sum((await store.catalog_totals(T)).instances.values()) == 4
    finally:
        await store.close()


async def test_a_held_connection_the_server_ended_costs_no_request(
    postgres_database_url: str,
) -> None:
    """PostgreSQL ends the connection the store holds (an administrator, a failover): the
    read that finds it dead, and the write whose BEGIN does, nothing having run, go to the
    pool instead of failing, and the store holds a new connection after."""
    store = Store.from_url(postgres_database_url)
    admin = await asyncpg.connect(_dsn(postgres_database_url))
    terminate_the_store = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    try:
        await store.create_instance(T, InstanceWrite(id="i0", definition_id="wf"))
        # Only the held connection is open so far: the write and the read ran on it.
        assert await store.get_instance(T, "i0") is not None
        assert await admin.fetchval(terminate_the_store) == 1
        await asyncio.sleep(0.2)
        assert await store.get_instance(T, "i0") is not None
        assert await store.get_instance(T, "i0") is not None
        assert await admin.fetchval(terminate_the_store) >= 1
        await asyncio.sleep(0.2)
        await store.create_instance(T, InstanceWrite(id="i1", definition_id="wf"))
        assert sum((await store.catalog_totals(T)).instances.values()) == 2
    finally:
        await admin.close()
        await store.close()


async def test_reads_arriving_together_survive_the_end_of_every_held_connection(
    postgres_database_url: str,
) -> None:
    """Reads arriving together take several held connections (a dashboard's summary under
    load). PostgreSQL ends every connection of the store; once they have sat idle for the
    time after which a connection is pinged before use, none of the reads or writes that
    come next fails, whichever held connection or pool connection each takes."""
    store = Store.from_url(postgres_database_url)
    admin = await asyncpg.connect(_dsn(postgres_database_url))
    terminate_the_store = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )

    async def read_together() -> list[bool]:
        reads = [store.get_instance(T, f"i{n % 2}") for n in range(16)]
        return [found is not None for found in await asyncio.gather(*reads)]

    try:
        await store.create_instance(T, InstanceWrite(id="i0", definition_id="wf"))
        assert await read_together() == [True, False] * 8
        assert await admin.fetchval(terminate_the_store) > 1
        await asyncio.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
        assert await read_together() == [True, False] * 8
        writes = [
            store.create_instance(T, InstanceWrite(id=f"i{n}", definition_id="wf"))
            for n in range(1, 5)
        ]
        await asyncio.gather(*writes)
        assert await read_together() == [True] * 16
        assert sum((await store.catalog_totals(T)).instances.values()) == 5
    finally:
        await admin.close()
        await store.close()


async def test_a_single_write_over_a_row_that_changed_since_it_was_read_writes_nothing(
    postgres_database_url: str,
) -> None:
    """A single instance's write is one statement that writes only over the row as it was
    read (`instances._write_as_read`). Read before another writer changed or created the
    row, it writes nothing at all, and the store's own call writes it as it would have."""
    store = Store.from_url(postgres_database_url)
    db = store._db
    try:
        await store.create_instance(T, InstanceWrite(id="i0", definition_id="wf", status="Running"))
        [read] = await db.read_mappings(
            instances._instance_by_id, {"tenant_id": T, "instance_id": "i0"}
        )
        await store.update_instance(T, "i0", InstancePatch(status="Suspended"))
        for stored, instance_id in ((read, "i0"), (None, "i1")):
            if stored is None:  # read as missing, created since
                await store.create_instance(
                    T, InstanceWrite(id="i1", definition_id="wf", status="Running")
                )
            tx = db.unlocked_transaction()
            assert tx is not None
            write = InstanceWrite(id=instance_id, definition_id="other", status="Faulted")
            assert await instances._write_as_read(db, tx, T, write, stored) is None
        assert await store.instance_counts(T) == {"wf": {"Suspended": 1, "Executing": 1}}
        assert [(c.entity_id, c.revision) for c in await store.changes_after(0, limit=10)] == [
            ("i0", 1),
            ("i0", 2),
            ("i1", 1),
        ]
        await store.create_instance(
            T, InstanceWrite(id="i1", definition_id="other", status="Running")
        )
        assert await store.instance_counts(T) == {
            "wf": {"Suspended": 1},
            "other": {"Executing": 1},
        }
    finally:
        await store.close()


async def test_single_writes_of_four_processes_keep_every_revision_in_order(
    postgres_database_url: str,
) -> None:
    """Four replicas (four stores, each writing on its held connection) create and
    update the same two instances at once: their one-statement writes find the lock
    taken or the row changed, and go through a transaction instead, or land. No write is
    lost or applied twice: each instance's revisions reach the change log once each and
    in order, and the kept counts equal the rows."""
    replicas = [Store.from_url(postgres_database_url) for _ in range(4)]
    statuses = ["Running", "Suspended", "Finished", "Faulted"]

    async def writer(store: Store, n: int) -> None:
        for step in range(40):
            instance_id = f"i{step % 2}"
            status = statuses[(n + step) % 4]
            if step % 10 < 2:
                await store.create_instance(
                    T, InstanceWrite(id=instance_id, definition_id=f"wf{n}", status=status)
                )
            else:
                await store.update_instance(T, instance_id, InstancePatch(status=status))

    try:
        await asyncio.gather(*(writer(store, n) for n, store in enumerate(replicas)))
        store = replicas[0]
        changes = await store.changes_after(0, limit=1_000)
        revisions: dict[str, list[int]] = {}
        for change in changes:
            revisions.setdefault(change.entity_id, []).append(change.revision)
        for instance_id, seen in revisions.items():
            stored = await store.get_instance(T, instance_id)
            assert stored is not None
            assert seen == list(range(1, len(seen) + 1)), instance_id
            assert stored.revision == seen[-1]
        live = (await store.list_instances(T, InstanceQuery(limit=10))).items
        expected = counted_by_definition(live)
        assert await store.instance_counts(T) == expected
        assert sorted(item.id for item in live) == sorted(revisions) == ["i0", "i1"]
    finally:
        for store in replicas:
            await store.close()
