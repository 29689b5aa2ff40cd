"""Live-instance totals per (tenant, sub-status), filled from the kept counts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_totals",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("sub_status", sa.String(20), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "sub_status", name="pk_instance_totals"),
    )
    op.execute(
        "INSERT INTO instance_totals (tenant_id, sub_status, count) "
        "SELECT tenant_id, sub_status, SUM(count) FROM instance_counts "
        "GROUP BY tenant_id, sub_status"
    )


def downgrade() -> None:
    op.drop_table("instance_totals")
