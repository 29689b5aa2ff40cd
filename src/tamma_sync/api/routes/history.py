"""`GET /api/workflows/instances/{id}/history`: what the mirror observed happen to one
instance, for its page's timeline and for scripts.

Built from the change log, which holds every change the mirror wrote with the instance as
it was right after: each observed state, when it was observed, what changed, and how long
the instance stayed in it. It reaches back as far as the change log is kept.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tamma_sync.api.deps import SettingsDep, StoreDep, ViewWorkflows
from tamma_sync.api.errors import not_found
from tamma_sync.api.schemas import ERROR_RESPONSES, HistoryEntry, InstanceHistory
from tamma_sync.models import Change, EntityKind

router = APIRouter(prefix="/api/workflows", tags=["workflows"], responses=ERROR_RESPONSES)

DEFAULT_ENTRIES = 500
MAX_ENTRIES = 5_000
#: Keys of an instance's wire JSON that every change moves: not worth naming as changed.
_BOOKKEEPING = frozenset({"revision", "updatedAt"})


@router.get(
    "/instances/{instance_id}/history",
    response_model_exclude_none=True,
    responses={404: {"description": "Nothing observed of this instance is kept"}},
)
async def instance_history(
    instance_id: str,
    store: StoreDep,
    tenant: ViewWorkflows,
    settings: SettingsDep,
    limit: Annotated[
        int,
        Query(ge=1, le=MAX_ENTRIES, description="The newest this many changes are returned."),
    ] = DEFAULT_ENTRIES,
) -> InstanceHistory:
    """Every change the mirror observed of the instance, oldest first: its status, activity
    and incident count after each, the fields that changed, and how long it stayed so. A
    deleted instance keeps its history (ending in a `delete`) until retention purges it."""
    changes, truncated = await store.entity_history(
        tenant, EntityKind.INSTANCE, instance_id, limit=limit
    )
    if not changes:
        raise not_found("Instance history")
    return InstanceHistory(
        instance_id=instance_id,
        entries=_entries(changes),
        truncated=truncated,
        kept_days=settings.retention_changes_days,
        kept_since=await store.oldest_change_at(),
    )


def _entries(changes: list[Change]) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    before: dict[str, Any] | None = None
    for change in changes:
        data = change.data
        entries.append(
            HistoryEntry(
                seq=change.seq,
                observed_at=change.at,
                op=change.op,
                revision=change.revision,
                status=data.get("status"),
                sub_status=change.sub_status,
                current_activity=data.get("currentActivity"),
                incident_count=data.get("incidentCount"),
                updated_at=data.get("updatedAt"),
                changed=None if before is None else _changed(before, data),
            )
        )
        before = data
    for entry, following in pairwise(entries):
        start, end = entry.updated_at, following.updated_at
        if start is None or end is None or end < start:
            start, end = entry.observed_at, following.observed_at
        entry.duration_ms = max(0, end - start)
    return entries


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    keys = (before.keys() | after.keys()) - _BOOKKEEPING
    return sorted(key for key in keys if before.get(key) != after.get(key))
