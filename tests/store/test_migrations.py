"""Migrations: from an empty database to head and back, and in step with tables.py.

Data a test needs at an older revision is written by today's code at head, then taken down
by the migrations' own downgrades: today's code writes tables an older revision lacks."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from tamma_sync.fields import MAX_ACTIVITY_LENGTH
from tamma_sync.models import (
    DEFAULT_TENANT_ID,
    EngineEventWrite,
    EngineReport,
    InstanceWrite,
    Scope,
    SubStatus,
    SyncBatch,
)
from tamma_sync.store import MigrationRefused, Store
from tamma_sync.store.migrations import alembic_config, head_revision
from tamma_sync.store.tables import metadata
from tests.support.process import run_cli


def _tables(connection: Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def _schema_differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def _downgrade_to_base(connection: Connection) -> None:
    command.downgrade(alembic_config(connection), "base")


#: The tenant the sync wrote into before migration 0010 named it `default`.
UNNAMED_TENANT = "00000000-0000-0000-0000-000000000000"


async def _rename_tenant(store: Store, old: str, new: str) -> None:
    """Move every row of tenant `old` to `new`, in each table that has a tenant."""
    async with store.sql_engine.begin() as conn:
        present = await conn.run_sync(_tables)
        for table in metadata.sorted_tables:
            if table.name in present and "tenant_id" in table.c:
                await conn.execute(
                    table.update().where(table.c.tenant_id == old).values(tenant_id=new)
                )


async def _at_revision(store: Store, target: str) -> None:
    """Move the schema to `target`, up or down."""
    current = await store.schema_revision()
    move = command.upgrade if current is None or current < target else command.downgrade
    async with store.sql_engine.begin() as conn:
        await conn.run_sync(lambda c: move(alembic_config(c), target))


async def test_migrate_from_empty_to_head_matches_the_tables(empty_database_url: str) -> None:
    store = Store.from_url(empty_database_url)
    try:
        assert await store.schema_revision() is None
        await store.migrate()
        assert await store.schema_revision() == head_revision()
        async with store.sql_engine.connect() as conn:
            assert {"definitions", "instances", "changes"} <= await conn.run_sync(_tables)
            assert await conn.run_sync(_schema_differences) == []
        await store.migrate()  # idempotent
        assert await store.schema_revision() == head_revision()
    finally:
        await store.close()


def test_processes_migrating_an_empty_database_at_once_all_succeed(
    empty_database_url: str,
) -> None:
    """Workers or replicas started together each migrate: one does, the other waits for it
    and finds the database at head. (On SQLite alembic committed after each migration and
    let the second in midway, where it failed on the indexes the first had made.)"""
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda _: run_cli("migrate", "--database-url", empty_database_url), range(2))
        )
    for result in results:
        assert result.returncode == 0, result.stderr
        assert f"database schema at revision {head_revision()}" in result.stdout


def test_the_head_read_from_file_names_is_the_one_alembic_finds() -> None:
    """Start-up reads the head from the versions' file names, so as not to load alembic."""
    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_downgrade_to_empty_and_up_again(empty_database_url: str) -> None:
    store = Store.from_url(empty_database_url)
    try:
        await store.migrate()
        async with store.sql_engine.begin() as conn:
            await conn.run_sync(_downgrade_to_base)
        async with store.sql_engine.connect() as conn:
            assert await conn.run_sync(_tables) == {"alembic_version"}
        await store.migrate()
        assert await store.schema_revision() == head_revision()
    finally:
        await store.close()


async def test_totals_added_by_0007_start_from_the_instances_present(
    empty_database_url: str,
) -> None:
    """A database upgraded with instances in it lists the same totals as one that kept
    them from the start."""
    store = Store.from_url(empty_database_url)
    try:
        await store.migrate()
        await store.put_instances(
            DEFAULT_TENANT_ID,
            [
                InstanceWrite.model_validate(
                    {"id": f"i{n}", "definition_id": f"wf{n % 3}", "status": status}
                )
                for n, status in enumerate(["running", "running", "completed", "faulted", None])
            ],
        )
        kept = (await store.catalog_totals(DEFAULT_TENANT_ID)).instances
        async with store.sql_engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0006"))
        async with store.sql_engine.connect() as conn:
            assert "instance_totals" not in await conn.run_sync(_tables)
        await store.migrate()
        assert (await store.catalog_totals(DEFAULT_TENANT_ID)).instances == kept
        assert kept == {"Executing": 2, "Finished": 1, "Faulted": 1, None: 1}
    finally:
        await store.close()


async def test_0010_moves_the_unnamed_tenant_to_default(empty_database_url: str) -> None:
    """What the sync wrote before 0010, under an id no page named, is tenant `default`'s
    afterwards; a key made for the old id reads it, and one already made for `default`
    (no row of it can collide) stays."""
    store = Store.from_url(empty_database_url)
    try:
        await store.migrate()  # written by today's code, then taken down to 0009
        batch = {
            "sourceId": "elsa",
            "definitions": [{"id": "wf", "name": "Flow"}],
            "instances": [
                {"id": f"i{n}", "definitionId": "wf", "status": status}
                for n, status in enumerate(["Running", "Running", "Finished"])
            ],
            "state": {"sourceId": "elsa", "phase": "idle"},
        }
        await store.apply_sync_batch(UNNAMED_TENANT, SyncBatch.model_validate(batch))
        await store.put_engine(UNNAMED_TENANT, "engine", EngineReport(state="IDLE"))
        event = EngineEventWrite(id="e1", type="PR_MERGED")
        await store.add_engine_events(UNNAMED_TENANT, "engine", [event], keep=10, max_age_ms=10**9)
        await _at_revision(store, "0009")
        _, old_token = await store.create_api_key(UNNAMED_TENANT, [Scope.WORKFLOWS_VIEW])
        _, default_token = await store.create_api_key(DEFAULT_TENANT_ID, [Scope.WORKFLOWS_VIEW])
        totals = await store.catalog_totals(UNNAMED_TENANT)

        await store.migrate()

        for token in (old_token, default_token):
            key = await store.verify_api_key(token)
            assert key is not None and key.tenant_id == DEFAULT_TENANT_ID
        assert await store.catalog_totals(DEFAULT_TENANT_ID) == totals
        assert totals.instances == {"Executing": 2, "Finished": 1}
        assert [d.id for d in await store.list_definitions(DEFAULT_TENANT_ID)] == ["wf"]
        assert [s.source_id for s in await store.source_states(DEFAULT_TENANT_ID)] == ["elsa"]
        engines = await store.list_engines(DEFAULT_TENANT_ID)
        assert sorted(e.id for e in engines) == ["elsa", "engine"], "the source's, and one"
        events, _ = await store.engine_events_page(DEFAULT_TENANT_ID, "engine", limit=10)
        assert [e.id for e in events] == ["e1"]
        assert not await store.tenant_has_data(UNNAMED_TENANT)
        logged = await store.changes_after(0)
        assert len(logged) == 4
        assert {(c.tenant_id, c.data["tenantId"]) for c in logged} == {(DEFAULT_TENANT_ID,) * 2}

        await _at_revision(store, "0009")
        assert await store.catalog_totals(UNNAMED_TENANT) == totals, "downgrade moves it back"
    finally:
        await store.close()


async def test_0010_refuses_to_merge_rows_that_could_collide(empty_database_url: str) -> None:
    """Both tenants holding instances: which one wins is not the migration's to decide, so
    it stops, names the tables, and leaves the database at 0009 as it was."""
    store = Store.from_url(empty_database_url)
    try:
        await store.migrate()  # written by today's code, then taken down to 0009
        for tenant in (UNNAMED_TENANT, "another"):
            await store.put_instances(
                tenant, [InstanceWrite.model_validate({"id": "i", "definition_id": "wf"})]
            )
        await _at_revision(store, "0009")
        await _rename_tenant(store, "another", DEFAULT_TENANT_ID)
        with pytest.raises(MigrationRefused, match="both hold rows in instances, instance_counts"):
            await store.migrate()
        assert await store.schema_revision() == "0009"
        refused = await asyncio.to_thread(run_cli, "migrate", "--database-url", empty_database_url)
        assert refused.returncode != 0
        [line] = refused.stderr.strip().splitlines()[-1:]
        assert line.startswith("Error: cannot rename tenant"), refused.stderr
        assert "Traceback" not in refused.stderr
        assert (await store.catalog_totals(UNNAMED_TENANT)).instances == {None: 1}
    finally:
        await store.close()


async def test_0011_cuts_an_activity_too_long_for_the_running_index(
    empty_database_url: str,
) -> None:
    """A current activity mirrored before 0011 may be longer than an index entry of
    PostgreSQL can hold: the migration cuts it to the length now accepted, then indexes."""
    store = Store.from_url(empty_database_url)
    try:
        await store.migrate()  # written by today's code, then taken down to 0010
        batch = {
            "sourceId": "elsa",
            "instances": [{"id": "i1", "definitionId": "wf", "subStatus": "Suspended"}],
        }
        await store.apply_sync_batch(DEFAULT_TENANT_ID, SyncBatch.model_validate(batch))
        await _at_revision(store, "0010")
        long_activity = "\U0001f600" * 1000 + "tail"  # 4,016 bytes: no index entry holds it
        async with store.sql_engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE instances SET current_activity = :a"), {"a": long_activity}
            )

        await store.migrate()

        cut = long_activity[:MAX_ACTIVITY_LENGTH]
        instance = await store.get_instance(DEFAULT_TENANT_ID, "i1")
        assert instance is not None and instance.current_activity == cut
        waiting = await store.running_by_activity(DEFAULT_TENANT_ID, "wf")
        assert waiting == {cut: {SubStatus.SUSPENDED: 1}}
    finally:
        await store.close()


async def test_an_upgraded_sqlite_database_has_statistics_for_its_new_indexes(
    sqlite_database_url: str,
) -> None:
    """0015 makes the correlation index anew; SQLite would plan with no statistics for it
    (and walk every row for a correlation id) until the next ANALYZE: the upgrade runs one."""
    store = Store.from_url(sqlite_database_url)

    async def analyzed() -> set[str]:
        async with store.sql_engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT idx FROM sqlite_stat1 WHERE tbl = :t"), {"t": "instances"}
            )
            return {name for (name,) in rows}

    try:
        writes = [
            InstanceWrite(
                id=f"i{n}", definition_id="wf", correlation_id=f"c{n % 5}" if n % 3 else None
            )
            for n in range(60)
        ]
        await store.put_instances(DEFAULT_TENANT_ID, writes)
        async with store.sql_engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE instances"))
        await _at_revision(store, "0014")
        assert "ix_instances_created" in await analyzed()
        assert "ix_instances_correlation" not in await analyzed()

        await store.migrate()

        assert "ix_instances_correlation" in await analyzed()
    finally:
        await store.close()
