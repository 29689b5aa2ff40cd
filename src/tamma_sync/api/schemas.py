"""Request and response bodies of the HTTP API (the queries live in the store).

Request bodies are the domain's write models, which are strict: wrong JSON types are
rejected instead of coerced, unknown keys are ignored (the original API stripped them), and
a `null` counts as "not sent".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from tamma_sync.fields import (
    MAX_ACTIVITY_LENGTH,
    MAX_ID_LENGTH,
    MAX_SOURCE_ID_LENGTH,
    IdOrEmpty,
    Text,
)
from tamma_sync.models import (
    ChangeOp,
    Definition,
    DefinitionWrite,
    EngineEvent,
    EpochMs,
    Instance,
    InstancePosition,
    InstanceWrite,
    Scope,
    SourceState,
    SubStatus,
    WireModel,
    WorkflowStatus,
)


class DefinitionIn(DefinitionWrite):
    """`POST /api/workflows/definitions`: `id` and `name` required, the rest optional.

    A client-sent `syncedAt` is ignored: the server sets it. So is `connections`, which the
    original did not know (it dropped unknown keys): they come from ELSA, by the sync.
    """

    name: Annotated[Text, StringConstraints(min_length=1)]
    connections: SkipJsonSchema[None] = None

    @model_validator(mode="before")
    @classmethod
    def _without_connections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key != "connections"}
        return data


class InstanceIn(InstanceWrite):
    """`POST /api/workflows/instances`: `definitionId` required; an empty or missing `id`
    gets a UUID; `createdAt`/`updatedAt` are kept when sent (sync writers send ELSA's)."""

    id: IdOrEmpty = ""


class InstanceList(BaseModel):
    """A page of instances: the original `{data, total, page, pageSize}` plus `nextCursor`."""

    data: list[Instance]
    total: int | None = Field(default=None, description="Omitted when includeTotal=false.")
    page: int
    page_size: int = Field(alias="pageSize")
    next_cursor: str | None = Field(
        default=None,
        alias="nextCursor",
        description="Pass as `cursor` to get the next page; absent on the last page.",
    )


class CancelledInstance(Instance):
    message: str | None = Field(
        default=None,
        description='"Instance already cancelled" when nothing was changed; for an ELSA '
        "instance that ELSA has not finished cancelling yet (202), what to expect.",
    )


class Ok(BaseModel):
    ok: bool = True


class ErrorBody(BaseModel):
    error: str


class ForbiddenBody(ErrorBody):
    required: str = Field(description="The scope the request needs.")


class Readiness(WireModel):
    status: str
    database: str
    schema_revision: str | None = None
    expected_schema_revision: str | None = None
    error: str | None = None
    sync: dict[str, str] | None = Field(
        default=None, description="Per ELSA source synced here: leader or standby."
    )


#: Highest page number served: far beyond any real list, well within SQL's offsets. The
#: extensions refuse a higher one; the compatible instance list serves this one instead.
MAX_PAGE = 1_000_000_000
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class InstanceListQuery(BaseModel):
    """The query of `GET /api/workflows/instances`, as one model: FastAPI validates it in
    one call, and `api/fast_routes.py` validates it the same way without FastAPI.
    Unknown parameters are ignored, as FastAPI ignores them."""

    page: int | str | None = Field(
        None,
        description="From 1. Read like the original's `parseInt` (`2abc` is 2, `3.9` is 3), "
        "never refused: below 1 or not a number is 1, and above "
        f"{MAX_PAGE:,} is read as {MAX_PAGE:,}, past the end of any list.",
    )
    page_size: int | str | None = Field(
        None,
        alias="pageSize",
        description=f"1 to {MAX_PAGE_SIZE}, default {DEFAULT_PAGE_SIZE}. Read like `page`: 0 "
        f"or not a number is {DEFAULT_PAGE_SIZE}, below 1 is 1, above {MAX_PAGE_SIZE} is "
        f"{MAX_PAGE_SIZE}.",
    )
    definition_id: str | None = Field(None, alias="definitionId")
    status: str | None = Field(None, description="Running and/or Finished, comma-separated.")
    sub_status: str | None = Field(
        None, alias="subStatus", description="ELSA sub-statuses, comma-separated."
    )
    correlation_id: str | None = Field(None, alias="correlationId")
    source_id: str | None = Field(
        None,
        alias="sourceId",
        max_length=MAX_SOURCE_ID_LENGTH,
        description="Only instances mirrored from this ELSA source. Empty: no filter.",
    )
    created_since: EpochMs | None = Field(
        None, alias="createdSince", description="Epoch ms: only instances created at or after it."
    )
    created_before: EpochMs | None = Field(
        None, alias="createdBefore", description="Epoch ms: only instances created before it."
    )
    updated_since: EpochMs | None = Field(
        None, alias="updatedSince", description="Epoch ms: only instances updated since."
    )
    updated_before: EpochMs | None = Field(
        None, alias="updatedBefore", description="Epoch ms: only instances updated before it."
    )
    id_prefix: str | None = Field(
        None,
        alias="idPrefix",
        max_length=MAX_ID_LENGTH,
        description="Only instances whose id starts with this text, taken literally and "
        "case-sensitively (`%` and `_` are no wildcards). Empty: no filter.",
    )
    current_activity: str | None = Field(
        None,
        alias="currentActivity",
        max_length=MAX_ACTIVITY_LENGTH,
        description="Only instances at this activity (exact match). Empty: no filter.",
    )
    status_text: str | None = Field(
        None,
        alias="statusText",
        max_length=MAX_ID_LENGTH,
        description="Only instances whose `status` field is this text exactly "
        "(case-sensitive): the free text the original's writers send, such as `pending` or "
        "`cancelled`. The `status` parameter filters by ELSA's Running/Finished instead. "
        "Empty: no filter.",
    )
    order_by: Literal["createdAt", "updatedAt"] = Field("createdAt", alias="orderBy")
    order_direction: Literal["asc", "desc"] | None = Field(
        None,
        alias="orderDirection",
        description="Default: asc for createdAt, desc for updatedAt.",
    )
    cursor: str | None = Field(None, description="nextCursor of the previous page (keyset paging).")
    include_total: bool = Field(True, alias="includeTotal")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid input"},
    401: {"model": ErrorBody, "description": "No API key, or not a valid one"},
    403: {"model": ForbiddenBody, "description": "The API key lacks the scope"},
    413: {"model": ErrorBody, "description": "Request body too large"},
    503: {"model": ErrorBody, "description": "Database unavailable"},
    507: {"model": ErrorBody, "description": "Database disk full: writes refused until freed"},
}


class BatchResult(BaseModel):
    created: int
    updated: int
    unchanged: int
    deleted: int


class SourceStatus(SourceState):
    tenant_id: str = Field(
        description='The tenant its rows are mirrored into: the source\'s "tenantId" in '
        "TAMMA_SYNC_SOURCES (`default` without one), or a pushing sync's key's tenant."
    )
    counts: dict[str, int] = Field(description="Live definitions and instances from the source.")


class SyncStatus(WireModel):
    sources: list[SourceStatus]
    keep_ended_instances_ms: int | None = Field(
        default=None,
        description="How long after it finished this server keeps an ended instance, in ms "
        "(TAMMA_SYNC_RETENTION_ENDED_INSTANCES_DAYS); absent: for ever. A sync pushing here "
        "does not mirror again what that purges.",
    )


class Triggered(BaseModel):
    triggered: list[str]


class InstancePositions(BaseModel):
    items: list[InstancePosition]


class EventsAdded(BaseModel):
    added: int = Field(
        description="Events of this request now stored: re-sent ids, and events the trim to "
        "the newest `TAMMA_SYNC_ENGINE_EVENTS_KEEP` (or by age) removed again, not counted."
    )


class EngineEventList(BaseModel):
    data: list[EngineEvent]
    total: int
    page: int
    page_size: int = Field(alias="pageSize")


class InstanceCounts(WireModel):
    total: int = 0
    by_status: dict[str, int] = Field(description="Running / Finished, from subStatus.")
    by_sub_status: dict[str, int]
    untyped: int = Field(default=0, description="Instances whose status maps to no subStatus.")

    @classmethod
    def total_of(cls, groups: Iterable[dict[str | None, int]]) -> InstanceCounts:
        """Sum `{subStatus or None: count}` groups (one per definition) into counts."""
        return cls.model_validate(count_breakdown(groups))


_SUB_STATUSES = tuple(member.value for member in SubStatus)
_SUB_STATUSES_BY_STATUS = tuple(
    (status.value, tuple(member.value for member in SubStatus if member.status is status))
    for status in WorkflowStatus
)


def count_breakdown(groups: Iterable[dict[str | None, int]]) -> dict[str, Any]:
    """`InstanceCounts` as its wire JSON, summed from `{subStatus or None: count}` groups;
    built without the model, once per definition on the dashboard."""
    by_sub_status = dict.fromkeys(_SUB_STATUSES, 0)
    untyped = 0
    for group in groups:
        for sub_status, count in group.items():
            if sub_status in by_sub_status:
                by_sub_status[sub_status] += count
            else:
                untyped += count
    by_status = {
        status: sum(by_sub_status[sub_status] for sub_status in sub_statuses)
        for status, sub_statuses in _SUB_STATUSES_BY_STATUS
    }
    return {
        "total": sum(by_sub_status.values()) + untyped,
        "byStatus": by_status,
        "bySubStatus": by_sub_status,
        "untyped": untyped,
    }


class DefinitionWithCounts(Definition):
    """A definition with its counts (`?compact=true`: without activities and variables)."""

    instance_count: int
    counts: InstanceCounts


class EngineHealth(BaseModel):
    online: int
    offline: int


class SyncHealth(WireModel):
    source_id: str
    phase: str
    last_success_at: int | None = None
    last_error: str | None = None
    last_error_at: int | None = None

    @classmethod
    def of(cls, state: SourceState) -> SyncHealth:
        return cls(
            source_id=state.source_id,
            phase=state.phase.value,
            last_success_at=state.last_success_at,
            last_error=state.last_error,
            last_error_at=state.last_error_at,
        )


class DashboardSummary(WireModel):
    engine_count: int
    workflow_definitions: int = Field(description="How many definitions (a count).")
    recent_events: list[EngineEvent] = Field(description="The latest 20 across engines.")
    instances: InstanceCounts
    engines: EngineHealth
    sync: list[SyncHealth]


class HistoryEntry(WireModel):
    """One change the mirror observed, with the instance's state right after it."""

    seq: int = Field(description="The change's position in the change log (its SSE id).")
    observed_at: int = Field(description="When the mirror wrote the change (epoch ms).")
    op: ChangeOp
    revision: int
    status: str | None = None
    sub_status: SubStatus | None = None
    current_activity: str | None = None
    incident_count: int | None = None
    updated_at: int | None = Field(
        default=None, description="The source's own time of this state (epoch ms)."
    )
    changed: list[str] | None = Field(
        default=None,
        description="The fields that differ from the entry before (absent on the first).",
    )
    duration_ms: int | None = Field(
        default=None,
        description="How long the instance stayed in this state: until the next entry, by "
        "the source's `updatedAt` where both have one. Absent on the newest entry.",
    )


class InstanceHistory(WireModel):
    """What the mirror observed happen to an instance, oldest first."""

    instance_id: str
    entries: list[HistoryEntry]
    truncated: bool = Field(description="Older changes are in the log beyond `limit`.")
    kept_days: float = Field(
        description="How long the change log keeps changes (TAMMA_SYNC_RETENTION_CHANGES_DAYS)."
    )
    kept_since: int | None = Field(
        default=None, description="When the oldest change still in the log was written."
    )


class ActivityRunning(WireModel):
    """Running instances waiting at one activity of a definition."""

    activity_id: str
    running: int
    by_sub_status: dict[SubStatus, int] = Field(
        description="Per running sub-status (only those with instances), most first."
    )


class DefinitionActivities(WireModel):
    """Where a definition's running instances are: how many at each activity."""

    definition_id: str
    activities: list[ActivityRunning] = Field(
        description="Sorted by `running`, most first, then by `activityId`."
    )
    without_activity: int = Field(description="Running instances with no current activity.")
    running: int = Field(description="All running instances of the definition.")


class CallerAccess(WireModel):
    """Who the caller is: what a page needs to show only the actions its key may take."""

    tenant_id: str
    scopes: list[Scope]
    key_id: str | None = Field(
        default=None, description="Absent on an open server (no API keys): every scope."
    )


class TrendInterval(WireModel):
    """Instances that started, finished and faulted in one interval."""

    start: int = Field(description="When the interval starts (epoch ms).")
    started: int
    finished: int
    faulted: int


class Trend(WireModel):
    """Instances started, finished and faulted per interval of a window ending now, by the
    source's own times: started by `createdAt`, finished and faulted by `finishedAt` (or
    `updatedAt` without one)."""

    window: str = Field(description="`hour`, `day` or `week`.")
    definition_id: str | None = Field(
        default=None, description="The definition counted; absent: all definitions."
    )
    interval_seconds: int
    since: int = Field(description="When the first interval starts (epoch ms).")
    until: int = Field(description="When the last interval, the one holding now, ends.")
    started: int = Field(description="In the whole window.")
    finished: int = Field(description="In the whole window.")
    faulted: int = Field(description="In the whole window.")
    intervals: list[TrendInterval] = Field(description="Oldest first, every interval.")


class JournalEntry(WireModel):
    """One event of an instance's execution journal, as its ELSA source recorded it."""

    sequence: int | None = None
    at: int | None = Field(default=None, description="When (epoch ms).")
    event: str | None = Field(default=None, description="`Started`, `Completed`, `Faulted`, …")
    activity_id: str | None = None
    activity_type: str | None = None
    activity_name: str | None = None
    node_id: str | None = None
    message: str | None = None


class InstanceJournal(WireModel):
    """A page of an instance's execution journal, read from its ELSA source on request."""

    instance_id: str
    source_id: str
    page: int = Field(description="Zero-based, as ELSA's own.")
    page_size: int
    total: int = Field(description="Events in the whole journal.")
    entries: list[JournalEntry] = Field(description="Oldest first.")
