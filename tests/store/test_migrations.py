"""Migrations: from an empty database to head and back, and in step with tables.py."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

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
