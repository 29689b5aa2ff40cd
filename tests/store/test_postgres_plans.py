"""PostgreSQL's plans for the reads every request makes, where they could go wrong unnoticed:
a plan that reads every row of a tenant answers correctly, only slower with each row."""

from __future__ import annotations

import asyncio

import asyncpg
import sqlalchemy as sa

from tamma_sync.models import DEFAULT_TENANT_ID, InstanceWrite
from tamma_sync.store import InstanceQuery, Store
from tamma_sync.store.instances import _instance_by_id


async def test_an_instance_is_read_by_its_primary_key_before_there_are_statistics(
    empty_postgres_database_url: str,
) -> None:
    """The read behind every single-instance request (the .NET service's every PUT) on a
    new database, which PostgreSQL has not analyzed yet (autovacuum's first pass comes a
    minute or more later): by the primary key, not by a partial index that starts with the
    tenant, whose every entry it would read."""
    store = Store.from_url(empty_postgres_database_url)
    try:
        await store.migrate()
        for number in range(300):
            await store.create_instance(
                DEFAULT_TENANT_ID, InstanceWrite(id=f"i{number:03d}", definition_id="wf")
            )
        sql = str(_instance_by_id.compile(dialect=store.sql_engine.dialect))
    finally:
        await store.close()
    dsn = sa.make_url(empty_postgres_database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(dsn.render_as_string(False))
    try:
        analyzed = await connection.fetchval(
            "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL "
            "FROM pg_stat_user_tables WHERE relname = 'instances'"
        )
        plan = await connection.fetch(f"EXPLAIN {sql}", DEFAULT_TENANT_ID, "i150")
    finally:
        await connection.close()
    assert not analyzed, "the database must be one PostgreSQL has no statistics for"
    assert "pk_instances" in plan[0][0], [row[0] for row in plan]


async def test_a_bulk_load_gets_statistics_while_it_goes_on(
    empty_postgres_database_url: str,
) -> None:
    """A table a bulk load grew is analyzed for the planner (autovacuum may be off or
    late), on a connection of its own while the writes go on: every write still commits
    and the store closes with an analysis under way."""
    store = Store.from_url(empty_postgres_database_url)
    dsn = sa.make_url(empty_postgres_database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(dsn.render_as_string(False))
    analyzed_query = "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = $1"
    try:
        await store.migrate()
        batch = 1_000
        for start in range(0, 6 * batch, batch):
            writes = [
                InstanceWrite(id=f"i{number:05d}", definition_id=f"wf{number % 7}")
                for number in range(start, start + batch)
            ]
            await store.put_instances(DEFAULT_TENANT_ID, writes)
        for _ in range(100):  # the analysis runs beside the writes: wait for it, 10 s at most
            if await connection.fetchval(analyzed_query, "instances"):
                break
            await asyncio.sleep(0.1)
        assert await connection.fetchval(analyzed_query, "instances") >= 1
        total = await store.list_instances(DEFAULT_TENANT_ID, InstanceQuery(limit=1))
        assert total.total == 6 * batch
        # Close while the next analysis is under way: nothing hangs, nothing is lost.
        await store.put_instances(
            DEFAULT_TENANT_ID,
            [InstanceWrite(id=f"j{number:05d}", definition_id="wf") for number in range(6_000)],
        )
    finally:
        await store.close()
        await connection.close()
    reopened = Store.from_url(empty_postgres_database_url)
    try:
        page = await reopened.list_instances(DEFAULT_TENANT_ID, InstanceQuery(limit=1))
        assert page.total == 12_000
    finally:
        await reopened.close()
