"""Migrations: from an empty database to head and back, and in step with tables.py."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from tamma_sync.models import DEFAULT_TENANT_ID, InstanceWrite
from tamma_sync.store import Store
from tamma_sync.store.migrations import alembic_config, head_revision
from tamma_sync.store.tables import metadata


def _tables(connection: Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def _schema_differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def _downgrade_to_base(connection: Connection) -> None:
    command.downgrade(alembic_config(connection), "base")


async def test_migrate_from_empty_to_head_matches_the_tables(database_url: str) -> None:
    store = Store.from_url(database_url)
    try:
        assert await store.schema_revision() is None
        await store.migrate()
        assert await store.schema_revision() == head_revision()
        async with store.engine.connect() as conn:
            assert {"definitions", "instances", "changes"} <= await conn.run_sync(_tables)
            assert await conn.run_sync(_schema_differences) == []
        await store.migrate()  # idempotent
        assert await store.schema_revision() == head_revision()
    finally:
        await store.close()


async def test_downgrade_to_empty_and_up_again(database_url: str) -> None:
    store = Store.from_url(database_url)
    try:
        await store.migrate()
        async with store.engine.begin() as conn:
            await conn.run_sync(_downgrade_to_base)
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_tables) == {"alembic_version"}
        await store.migrate()
        assert await store.schema_revision() == head_revision()
    finally:
        await store.close()


async def test_totals_added_by_0007_start_from_the_instances_present(database_url: str) -> None:
    """A database upgraded with instances in it lists the same totals as one that kept
    them from the start."""
    store = Store.from_url(database_url)
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
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0006"))
        async with store.engine.connect() as conn:
            assert "instance_totals" not in await conn.run_sync(_tables)
        await store.migrate()
        assert (await store.catalog_totals(DEFAULT_TENANT_ID)).instances == kept
        assert kept == {"Executing": 2, "Finished": 1, "Faulted": 1, None: 1}
    finally:
        await store.close()
