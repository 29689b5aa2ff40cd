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
from tamma_sync.api.responses import JsonBytes, json_response
from tamma_sync.api.schemas import ERROR_RESPONSES, InstanceHistory
from tamma_sync.models import EntityKind
from tamma_sync.store import ObservedChange

router = APIRouter(prefix="/api/workflows", tags=["workflows"], responses=ERROR_RESPONSES)

DEFAULT_ENTRIES = 500
MAX_ENTRIES = 5_000
#: Keys of an instance's wire JSON that every change moves: not worth naming as changed.
_BOOKKEEPING = frozenset({"revision", "updatedAt"})


@router.get(
    "/instances/{instance_id}/history",
    response_model=InstanceHistory,
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
) -> JsonBytes:
    """Every change the mirror observed of the instance, oldest first: its status, activity
    and incident count after each, the fields that changed, and how long it stayed so. A
    deleted instance keeps its history (ending in a `delete`) until retention purges it."""
    changes, truncated = await store.entity_history(
        tenant, EntityKind.INSTANCE, instance_id, limit=limit
    )
    if not changes:
        raise not_found("Instance history")
    # Encoded here, not through `InstanceHistory` (which documents the body): a model per
    # entry, validated and then serialized, was most of a long history's server CPU.
    body: dict[str, Any] = {
        "instanceId": instance_id,
        "entries": _entries(changes),
        "truncated": truncated,
        "keptDays": settings.retention_changes_days,
    }
    kept_since = await store.oldest_change_at()
    if kept_since is not None:
        body["keptSince"] = kept_since
    return json_response(body)


def _entries(changes: list[ObservedChange]) -> list[dict[str, Any]]:
    """`HistoryEntry` wire dicts (null fields left out), oldest first."""
    entries: list[dict[str, Any]] = []
    before: dict[str, Any] | None = None
    for change in changes:
        data = change.data
        entry: dict[str, Any] = {
            "seq": change.seq,
            "observedAt": change.at,
            "op": change.op,
            "revision": change.revision,
        }
        state = {
            "status": data.get("status"),
            "subStatus": change.sub_status,
            "currentActivity": data.get("currentActivity"),
            "incidentCount": data.get("incidentCount"),
            "updatedAt": data.get("updatedAt"),
        }
        entry.update((key, value) for key, value in state.items() if value is not None)
        if before is not None:
            entry["changed"] = _changed(before, data)
        entries.append(entry)
        before = data
    for entry, following in pairwise(entries):
        start, end = entry.get("updatedAt"), following.get("updatedAt")
        if start is None or end is None or end < start:
            start, end = entry["observedAt"], following["observedAt"]
        entry["durationMs"] = max(0, end - start)
    return entries


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    if before.keys() == after.keys():  # mostly: the same fields, some of them changed
        found = [key for key, value in after.items() if before[key] != value]
    else:
        found = [key for key in before.keys() | after.keys() if before.get(key) != after.get(key)]
    return sorted(key for key in found if key not in _BOOKKEEPING)
