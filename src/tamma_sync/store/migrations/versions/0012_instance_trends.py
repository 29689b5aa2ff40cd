"""Trends: instances started, finished and faulted per minute, quarter hour and hour, per
definition and in all.

Filled from the instances mirrored so far, deleted ones included, as the writes from now on
keep it (store/trends.py): a start in the minute of `createdAt`, a finish or a fault in the
minute of `finishedAt`, or of `updatedAt` without one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "(tenant_id, definition_id, span_minutes, minute, started, finished, faulted)"
#: Every instance's trend events: its start, and its finish or fault.
EVENTS = """
SELECT tenant_id, definition_id, created_at / 60000 AS minute,
       1 AS started, 0 AS finished, 0 AS faulted
FROM instances
UNION ALL
SELECT tenant_id, definition_id, COALESCE(finished_at, updated_at) / 60000,
       0, CASE WHEN sub_status = 'Finished' THEN 1 ELSE 0 END,
       CASE WHEN sub_status = 'Faulted' THEN 1 ELSE 0 END
FROM instances WHERE sub_status IN ('Finished', 'Faulted')
"""


def upgrade() -> None:
    op.create_table(
        "instance_trends",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("definition_id", sa.String(255), nullable=False),
        sa.Column("span_minutes", sa.SmallInteger(), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("finished", sa.Integer(), nullable=False),
        sa.Column("faulted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "definition_id", "span_minutes", "minute", name="pk_instance_trends"
        ),
    )
    op.execute(
        f"INSERT INTO instance_trends {COLUMNS} "
        "SELECT tenant_id, definition_id, 1, minute, SUM(started), SUM(finished), SUM(faulted) "
        f"FROM ({EVENTS}) AS events GROUP BY tenant_id, definition_id, minute"
    )
    # All definitions: an empty definition id (a real one never is).
    op.execute(
        f"INSERT INTO instance_trends {COLUMNS} "
        "SELECT tenant_id, '', 1, minute, SUM(started), SUM(finished), SUM(faulted) "
        "FROM instance_trends GROUP BY tenant_id, minute"
    )
    # Per quarter hour and per hour, from the minutes.
    for span in (15, 60):
        op.execute(
            f"INSERT INTO instance_trends {COLUMNS} "
            f"SELECT tenant_id, definition_id, {span}, minute / {span} * {span}, "
            "SUM(started), SUM(finished), SUM(faulted) FROM instance_trends "
            f"WHERE span_minutes = 1 GROUP BY tenant_id, definition_id, minute / {span}"
        )


def downgrade() -> None:
    op.drop_table("instance_trends")
