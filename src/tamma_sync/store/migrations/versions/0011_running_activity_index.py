"""An index for where a definition's running instances are: per sub-status and activity.

Counted from the instances' rows, the count reads every running instance of the definition,
variables and all; from this index, only its entries. It holds running rows only, so that
SQLite does not prefer it to the ordered indexes for pages filtered by definition and
sub-status; `deleted_at` (NULL in every entry) lets SQLite count from the index alone, as it
does not take a partial index's WHERE for the columns it names.

A current activity is at most 500 characters from now on (an index entry of PostgreSQL
holds at most 2,704 bytes); a longer one mirrored before is cut to that length first, or
the index could not be built. (ELSA's activity ids are a few dozen characters.)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text(
    "deleted_at IS NULL AND sub_status IN ('Pending', 'Executing', 'Suspended', 'Interrupted')"
)


#: fields.MAX_ACTIVITY_LENGTH when this revision was written.
MAX_ACTIVITY_LENGTH = 500


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE instances SET current_activity = substr(current_activity, 1, :longest) "
            "WHERE length(current_activity) > :longest"
        ).bindparams(longest=MAX_ACTIVITY_LENGTH)
    )
    op.create_index(
        "ix_instances_running_activity",
        "instances",
        ["tenant_id", "definition_id", "sub_status", "current_activity", "deleted_at"],
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )


def downgrade() -> None:
    op.drop_index("ix_instances_running_activity", "instances")
