"""Definitions keep a flowchart's connections between its activities, for the definition
page to draw. Definitions mirrored before get them with their next version or draft.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("definitions", sa.Column("connections", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("definitions", "connections")
