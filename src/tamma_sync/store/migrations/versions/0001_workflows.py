"""Definitions, instances and the change log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")
INSTANCE_INDEXES = {
    "ix_instances_created": ["tenant_id", "created_at", "id"],
    "ix_instances_updated": ["tenant_id", "updated_at", "id"],
    "ix_instances_definition_created": ["tenant_id", "definition_id", "created_at", "id"],
    "ix_instances_definition_updated": ["tenant_id", "definition_id", "updated_at", "id"],
    "ix_instances_sub_status_updated": ["tenant_id", "sub_status", "updated_at", "id"],
    "ix_instances_definition_sub_status": ["tenant_id", "definition_id", "sub_status"],
    "ix_instances_correlation": ["tenant_id", "correlation_id"],
}


def upgrade() -> None:
    op.create_table(
        "definitions",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("definition_id", sa.String(255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer()),
        sa.Column("description", sa.Text()),
        sa.Column("activities", sa.JSON()),
        sa.Column("variables", sa.JSON()),
        sa.Column("version_id", sa.String(255)),
        sa.Column("is_published", sa.Boolean()),
        sa.Column("is_latest", sa.Boolean()),
        sa.Column("created_at", sa.BigInteger()),
        sa.Column("synced_at", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.String(100)),
        sa.Column("content_hash", sa.String(32), nullable=False),
        sa.Column("deleted_at", sa.BigInteger()),
        sa.PrimaryKeyConstraint("tenant_id", "definition_id", name="pk_definitions"),
    )
    op.create_table(
        "instances",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("definition_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(255)),
        sa.Column("sub_status", sa.String(20)),
        sa.Column("current_activity", sa.Text()),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("correlation_id", sa.String(255)),
        sa.Column("name", sa.Text()),
        sa.Column("incident_count", sa.Integer()),
        sa.Column("definition_version", sa.Integer()),
        sa.Column("definition_version_id", sa.String(255)),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger()),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.String(100)),
        sa.Column("content_hash", sa.String(32), nullable=False),
        sa.Column("deleted_at", sa.BigInteger()),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_instances"),
    )
    for name, columns in INSTANCE_INDEXES.items():
        op.create_index(name, "instances", columns, sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_table(
        "changes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("entity", sa.String(20), nullable=False),
        sa.Column("entity_id", sa.String(255), nullable=False),
        sa.Column("op", sa.String(10), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("definition_id", sa.String(255)),
        sa.Column("sub_status", sa.String(20)),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_changes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_changes_entity", "changes", ["tenant_id", "entity_id", "seq"])


def downgrade() -> None:
    op.drop_table("changes")
    op.drop_table("instances")
    op.drop_table("definitions")
