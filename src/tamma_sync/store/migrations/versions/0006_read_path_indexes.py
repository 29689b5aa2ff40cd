"""Covering indexes for the dashboard's counts and the live definitions' versions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_instance_counts_sub_status", "instance_counts", ["tenant_id", "sub_status", "count"]
    )
    op.create_index(
        "ix_instance_counts_definition",
        "instance_counts",
        ["tenant_id", "definition_id", "sub_status", "count"],
    )
    op.create_index(
        "ix_definitions_live",
        "definitions",
        ["tenant_id", "definition_id", "revision", "synced_at"],
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_definitions_live", "definitions")
    op.drop_index("ix_instance_counts_definition", "instance_counts")
    op.drop_index("ix_instance_counts_sub_status", "instance_counts")
