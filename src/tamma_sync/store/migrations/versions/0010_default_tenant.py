"""The default tenant gets a name: `default`, instead of an all-zero id no page mentions.

Every row of tenant `00000000-0000-0000-0000-000000000000` moves to `default`, API keys
included (a key made for the old id reads the same data afterwards), and the change log's
snapshots say `tenantId: default` too, so a stream resumed across the upgrade matches what
the API returns.

Tenants are merged only where no key can collide: when both tenants hold rows of a table
keyed by tenant (definitions, instances, sources, engines, counts), which row wins is not
the migration's to decide, so it refuses, naming the tables. Keys and change-log rows, keyed
by their own ids, always move.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

from tamma_sync.store.errors import MigrationRefused

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNNAMED = "00000000-0000-0000-0000-000000000000"
DEFAULT = "default"

#: Tables whose primary or unique key starts with the tenant.
KEYED_BY_TENANT = (
    "definitions",
    "instances",
    "sync_state",
    "engines",
    "engine_events",
    "instance_counts",
    "instance_totals",
)
#: The change log's `data` is the entity's wire JSON, which names its tenant.
RENAME_IN_SNAPSHOTS = {
    "sqlite": "json_set(data, '$.tenantId', :new)",
    "postgresql": "jsonb_set(data::jsonb, '{tenantId}', to_jsonb(CAST(:new AS varchar)))::json",
}
SNAPSHOT_TENANT = {
    "sqlite": "json_extract(data, '$.tenantId')",
    "postgresql": "data->>'tenantId'",
}


def upgrade() -> None:
    _rename_tenant(op.get_bind(), UNNAMED, DEFAULT)


def downgrade() -> None:
    _rename_tenant(op.get_bind(), DEFAULT, UNNAMED)


def _rename_tenant(bind: Connection, old: str, new: str) -> None:
    names = {"old": old, "new": new}
    shared = [
        table for table in KEYED_BY_TENANT if _holds(bind, table, old) and _holds(bind, table, new)
    ]
    if shared:
        raise MigrationRefused(
            f"cannot rename tenant {old!r} to {new!r}: both hold rows in {', '.join(shared)}. "
            f"Give one of them another id in every table with a tenant_id (UPDATE <table> "
            f"SET tenant_id = '<another id>' WHERE tenant_id = '{new}'), then migrate again"
        )
    for table in (*KEYED_BY_TENANT, "api_keys"):
        bind.execute(sa.text(f"UPDATE {table} SET tenant_id = :new WHERE tenant_id = :old"), names)
    dialect = bind.dialect.name
    bind.execute(
        sa.text(
            f"UPDATE changes SET tenant_id = :new, data = CASE "
            f"WHEN {SNAPSHOT_TENANT[dialect]} = :old THEN {RENAME_IN_SNAPSHOTS[dialect]} "
            f"ELSE data END WHERE tenant_id = :old"
        ),
        names,
    )


def _holds(bind: Connection, table: str, tenant_id: str) -> bool:
    found = bind.execute(
        sa.text(f"SELECT 1 FROM {table} WHERE tenant_id = :tenant LIMIT 1"), {"tenant": tenant_id}
    )
    return found.first() is not None
