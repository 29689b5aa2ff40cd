"""`GET /api/workflows/definitions/{id}/activities`: where a definition's running instances
are — how many wait at each activity, per sub-status — to see where instances get stuck.

Counted by the store from an index on every request, so it is current to the last write.
"""

from __future__ import annotations

from fastapi import APIRouter

from tamma_sync.api.deps import StoreDep, ViewWorkflows
from tamma_sync.api.errors import not_found
from tamma_sync.api.schemas import ERROR_RESPONSES, ActivityRunning, DefinitionActivities
from tamma_sync.models import SubStatus

router = APIRouter(prefix="/api/workflows", tags=["workflows"], responses=ERROR_RESPONSES)


@router.get(
    "/definitions/{definition_id}/activities",
    responses={404: {"description": "Neither the definition nor an instance of it exists"}},
)
async def definition_activities(
    definition_id: str, store: StoreDep, tenant: ViewWorkflows
) -> DefinitionActivities:
    """How many running instances (Pending, Executing, Suspended, Interrupted: not ended)
    of the definition are at each activity, split by sub-status. Deleted instances never
    count. A definition known only from its instances answers too."""
    found = await store.running_by_activity(tenant, definition_id)
    if found is None:
        raise not_found("Definition")
    without = sum(found.get(None, {}).values())
    activities = [
        ActivityRunning(
            activity_id=activity_id,
            running=sum(counts.values()),
            by_sub_status=_most_first(counts),
        )
        for activity_id, counts in found.items()
        if activity_id is not None
    ]
    activities.sort(key=lambda activity: (-activity.running, activity.activity_id))
    return DefinitionActivities(
        definition_id=definition_id,
        activities=activities,
        without_activity=without,
        running=sum(activity.running for activity in activities) + without,
    )


def _most_first(counts: dict[SubStatus, int]) -> dict[SubStatus, int]:
    order = list(SubStatus)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], order.index(item[0])))
    return dict(ranked)
