"""Trends: instances started, finished and faulted per minute, quarter hour and hour, per
definition and in all.

Filled from the instances mirrored so far, deleted ones included, as the writes from now on
keep it (store/trends.py): a start in the minute of `createdAt`, a finish or a fault in the
minute of `finishedAt`, or of `updatedAt` without one; each span only as far back as it is
kept.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "(tenant_id, definition_id, span_minutes, minute, started, finished, faulted)"
#: trends.KEPT_MINUTES when this revision was written: how far back each span is filled.
KEPT_MINUTES = {1: 1_440 + 60, 15: 2 * 1_440, 60: 8 * 1_440}
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
    now_minute = int(time.time()) // 60
    for span, kept in KEPT_MINUTES.items():
        op.execute(
            sa.text(
                f"INSERT INTO instance_trends {COLUMNS} "
                f"SELECT tenant_id, definition_id, {span}, minute / {span} * {span}, "
                "SUM(started), SUM(finished), SUM(faulted) "
                f"FROM ({EVENTS}) AS events WHERE minute / {span} * {span} >= :since "
                f"GROUP BY tenant_id, definition_id, minute / {span}"
            ).bindparams(since=now_minute - kept)
        )
        # All definitions: an empty definition id (a real one never is).
        op.execute(
            f"INSERT INTO instance_trends {COLUMNS} "
            f"SELECT tenant_id, '', {span}, minute, SUM(started), SUM(finished), SUM(faulted) "
            f"FROM instance_trends WHERE span_minutes = {span} GROUP BY tenant_id, minute"
        )


def downgrade() -> None:
    op.drop_table("instance_trends")
