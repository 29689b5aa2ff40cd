"""Instance counts kept in step with writes, filled from the instances present.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_counts",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("source_id", sa.String(100), nullable=False),
        sa.Column("definition_id", sa.String(255), nullable=False),
        sa.Column("sub_status", sa.String(20), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "source_id", "definition_id", "sub_status", name="pk_instance_counts"
        ),
    )
    op.execute(
        "INSERT INTO instance_counts (tenant_id, source_id, definition_id, sub_status, count) "
        "SELECT tenant_id, COALESCE(source_id, ''), definition_id, COALESCE(sub_status, ''), "
        "COUNT(*) FROM instances WHERE deleted_at IS NULL "
        "GROUP BY tenant_id, COALESCE(source_id, ''), definition_id, COALESCE(sub_status, '')"
    )


def downgrade() -> None:
    op.drop_table("instance_counts")
