"""Drop the (definition, sub-status) index: counts now come from instance_counts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.drop_index("ix_instances_definition_sub_status", "instances")


def downgrade() -> None:
    op.create_index(
        "ix_instances_definition_sub_status",
        "instances",
        ["tenant_id", "definition_id", "sub_status"],
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
