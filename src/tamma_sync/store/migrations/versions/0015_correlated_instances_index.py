"""The correlation-id index holds only instances that have one.

Most instances have none. SQLite's sampled ANALYZE reads an index's first entries, which
were all NULL, judged the index to narrow nothing, and walked the whole `updatedAt` index
instead for a correlation id with fewer matches than a page (3 s at 1,000,000 instances).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_instances_correlation"
COLUMNS = ["tenant_id", "correlation_id"]


def _recreate(where: str) -> None:
    op.drop_index(NAME, "instances")
    condition = sa.text(where)
    op.create_index(NAME, "instances", COLUMNS, sqlite_where=condition, postgresql_where=condition)


def upgrade() -> None:
    _recreate("deleted_at IS NULL AND correlation_id IS NOT NULL")


def downgrade() -> None:
    _recreate("deleted_at IS NULL")
