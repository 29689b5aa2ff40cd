"""Where a definition's running instances are: how many are at each activity, per
sub-status — "where are instances stuck".

Counted from the partial index of running instances on (tenant, definition, sub-status,
activity) alone, so the count never reads the instances' rows (their variables make them
large) however many there are.
"""

from __future__ import annotations

import sqlalchemy as sa

from tamma_sync.models import SubStatus
from tamma_sync.store.database import Database
from tamma_sync.store.tables import RUNNING, definitions, instances

#: Running instances at an activity, per sub-status: {activity (None: none): {sub-status: n}}.
RunningByActivity = dict[str | None, dict[SubStatus, int]]

_TENANT = sa.bindparam("tenant_id", type_=sa.String)
_DEFINITION = sa.bindparam("definition_id", type_=sa.String)

#: Built once. RUNNING is the index's own WHERE, literals and all: with the sub-statuses
#: bound as values instead, neither database could tell that the index holds every row
#: counted. The grouping follows the index's order.
_running_by_activity = (
    sa.select(instances.c.current_activity, instances.c.sub_status, sa.func.count())
    .where(instances.c.tenant_id == _TENANT, instances.c.definition_id == _DEFINITION, RUNNING)
    .group_by(instances.c.sub_status, instances.c.current_activity)
)

#: Whether the definition, or a live instance of it, exists: what tells "nothing running"
#: from "no such definition".
_known = sa.select(
    sa.or_(
        sa.exists().where(
            definitions.c.tenant_id == _TENANT,
            definitions.c.definition_id == _DEFINITION,
            definitions.c.deleted_at.is_(None),
        ),
        sa.exists().where(
            instances.c.tenant_id == _TENANT,
            instances.c.definition_id == _DEFINITION,
            instances.c.deleted_at.is_(None),
        ),
    )
)


async def running_by_activity(
    db: Database, tenant_id: str, definition_id: str
) -> RunningByActivity | None:
    """A definition's running instances per activity and sub-status; None when neither
    the definition nor a live instance of it exists."""
    parameters = {"tenant_id": tenant_id, "definition_id": definition_id}
    found: RunningByActivity = {}
    async with db.reading() as conn:
        for activity, sub_status, count in await db.dialect.driver_form(_running_by_activity).rows(
            conn, parameters
        ):
            found.setdefault(activity, {})[SubStatus(sub_status)] = count
        if found:
            return found
        [(known,)] = await db.dialect.driver_form(_known).rows(conn, parameters)
    return found if known else None
