"""The source index orders a source's instances by creation, not by id.

By id, an initial walk's rows landed at random places in it: each write transaction
rewrote about one of its pages per row, a sixth of SQLite's work in the walk. By
creation they land near one another, as in the other creation indexes. What reads it:
the sweep's windows of a source's instances created in a span (about a page of ELSA's
listing, sorted by id after), and pages filtered by source in creation order, which it
now serves in order.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_instances_source"
LIVE = sa.text("deleted_at IS NULL")


def _recreate(columns: list[str]) -> None:
    op.drop_index(NAME, "instances")
    op.create_index(NAME, "instances", columns, sqlite_where=LIVE, postgresql_where=LIVE)


def upgrade() -> None:
    _recreate(["tenant_id", "source_id", "created_at", "id"])


def downgrade() -> None:
    _recreate(["tenant_id", "source_id", "id"])
