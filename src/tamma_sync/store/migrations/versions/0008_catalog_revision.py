"""A revision of the catalog — the definitions and their instance counts — bumped by every
write that changes either.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_catalog_revision"),
    )
    op.execute("INSERT INTO catalog_revision (id, revision) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("catalog_revision")
