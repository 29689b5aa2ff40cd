"""Sync state per ELSA source, the engine registry and engine events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_instances_source",
        "instances",
        ["tenant_id", "source_id", "id"],
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    op.create_index("ix_definitions_source", "definitions", ["tenant_id", "source_id"])
    op.create_table(
        "sync_state",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("source_id", sa.String(255), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "source_id", name="pk_sync_state"),
    )
    op.create_table(
        "engines",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("kind", sa.String(50)),
        sa.Column("version", sa.String(100)),
        sa.Column("state", sa.String(100)),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("heartbeat_interval_seconds", sa.Float(), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.Column("last_heartbeat_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_engines"),
    )
    op.create_table(
        "engine_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("engine_id", sa.String(255), nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("issue_number", sa.BigInteger()),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_engine_events"),
        sa.UniqueConstraint(
            "tenant_id", "engine_id", "id", name="uq_engine_events__tenant_id_engine_id_id"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_engine_events_engine", "engine_events", ["tenant_id", "engine_id", "timestamp"]
    )
    op.create_index("ix_engine_events_recent", "engine_events", ["tenant_id", "timestamp"])


def downgrade() -> None:
    op.drop_table("engine_events")
    op.drop_table("engines")
    op.drop_table("sync_state")
    op.drop_index("ix_definitions_source", "definitions")
    op.drop_index("ix_instances_source", "instances")
