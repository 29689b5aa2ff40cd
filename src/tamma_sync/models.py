"""Domain models shared by every layer: what a definition, an instance and a change are.

No I/O here. The JSON shape of these models (camelCase, nulls omitted, epoch-millisecond
timestamps) is the Tamma-compatible wire shape, so the store can snapshot them into the
change log and the API can return them as they are.
"""

from __future__ import annotations

import hashlib
import time
from enum import StrEnum
from typing import Annotated, Any, Final

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

from tamma_sync.fields import (
    PATH_SAFE,
    ActivityName,
    EngineKind,
    EngineLabel,
    EntityId,
    ShortText,
    SourceId,
    Text,
)

#: The tenant of the sync's sources that name none, of the open (keyless) server, and of
#: keys created without one: a name an operator can read and type (migration 0010 moved the
#: data of the all-zero id it replaced).
DEFAULT_TENANT_ID: Final = "default"

#: Largest epoch-millisecond timestamp accepted anywhere (9999-12-31T23:59:59.999Z).
MAX_EPOCH_MS: Final = 253_402_300_799_999
#: Largest value of the 32-bit integer columns (version, incident count).
MAX_INT32: Final = 2**31 - 1
#: Most rows of each kind one sync batch may carry.
MAX_BATCH_INSTANCES: Final = 5_000
MAX_BATCH_DEFINITIONS: Final = 5_000
MAX_BATCH_DELETIONS: Final = 10_000


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds, the unit of every timestamp on the API."""
    return time.time_ns() // 1_000_000


class WorkflowStatus(StrEnum):
    """ELSA 3's coarse status."""

    RUNNING = "Running"
    FINISHED = "Finished"


class SubStatus(StrEnum):
    """ELSA 3's detailed status (`Interrupted` since ELSA 3.8): the typed state of an instance."""

    PENDING = "Pending"
    EXECUTING = "Executing"
    SUSPENDED = "Suspended"
    FINISHED = "Finished"
    CANCELLED = "Cancelled"
    FAULTED = "Faulted"
    INTERRUPTED = "Interrupted"

    @property
    def status(self) -> WorkflowStatus:
        """The coarse status ELSA reports next to this sub-status."""
        return WorkflowStatus.FINISHED if self in ENDED_SUB_STATUSES else WorkflowStatus.RUNNING

    @classmethod
    def parse(cls, text: str) -> SubStatus:
        """Case-insensitive lookup; raises ValueError naming the valid values."""
        found = _SUB_STATUS_BY_TEXT.get(text) or _SUB_STATUS_BY_TEXT.get(text.strip().lower())
        if found is None:
            valid = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown subStatus {text!r}; expected one of {valid}")
        return found


ENDED_SUB_STATUSES: Final = frozenset({SubStatus.FINISHED, SubStatus.CANCELLED, SubStatus.FAULTED})
#: Each sub-status by its text in lower case and as ELSA writes it (nearly every row's).
_SUB_STATUS_BY_TEXT: Final = {text: m for m in SubStatus for text in (m.value.lower(), m.value)}

#: How a legacy free-text `status` maps to the typed sub-status (case-insensitive, after
#: trimming; `-` and spaces count as `_`). ELSA 2's vocabulary, Tamma's and the common
#: words of other engines are covered; anything else (e.g. "Unknown") maps to no sub-status.
LEGACY_STATUS_TO_SUB_STATUS: Final[dict[str, SubStatus]] = {
    **dict.fromkeys(["pending", "idle", "queued", "created", "scheduled"], SubStatus.PENDING),
    **dict.fromkeys(
        ["running", "executing", "in_progress", "active", "started"], SubStatus.EXECUTING
    ),
    **dict.fromkeys(
        ["suspended", "paused", "waiting", "blocked", "awaiting_approval"], SubStatus.SUSPENDED
    ),
    **dict.fromkeys(
        ["finished", "completed", "complete", "succeeded", "success", "done"], SubStatus.FINISHED
    ),
    **dict.fromkeys(["cancelled", "canceled", "aborted"], SubStatus.CANCELLED),
    **dict.fromkeys(["faulted", "failed", "failure", "error", "errored"], SubStatus.FAULTED),
    "interrupted": SubStatus.INTERRUPTED,
}


def sub_status_from_legacy(status: str | None) -> SubStatus | None:
    """The typed sub-status a legacy writer's `status` string stands for, or None."""
    if status is None:
        return None
    key = status.strip().lower().replace("-", "_").replace(" ", "_")
    return LEGACY_STATUS_TO_SUB_STATUS.get(key)


def _parse_sub_status(value: Any) -> Any:
    return SubStatus.parse(value) if type(value) is str else value  # a SubStatus is parsed


#: Longest error kept in a source's `lastError`: a pushed state may not carry more.
MAX_ERROR_LENGTH: Final = 500


def clip_error(text: str) -> str:
    """`text` cut to `MAX_ERROR_LENGTH` characters, whatever a server answered."""
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


EpochMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS)]
Int32 = Annotated[int, Field(ge=0, le=MAX_INT32)]
Counter = Annotated[int, Field(ge=0, le=2**63 - 1)]
#: ELSA's timestamp text: ISO-8601 with up to 7 fractional digits and an offset.
ELSA_TIMESTAMP_PATTERN: Final = (
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})$"
)
#: A sub-status read case-insensitively, as ELSA reads its enums.
SubStatusField = Annotated[SubStatus, BeforeValidator(_parse_sub_status)]


class InvalidWrite(ValueError):
    """A write the store refuses, with the reason (the API answers 400)."""


class UnstorableValue(InvalidWrite):
    """A value JSON can carry but the store cannot keep: an integer beyond 64 bits, or a
    string with an unpaired surrogate."""


def dump_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """JSON as the store keeps it; UnstorableValue for what it cannot keep."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError as exc:
        raise UnstorableValue(f"a value cannot be stored: {exc}") from exc


def content_hash(content: dict[str, Any]) -> str:
    """A stable digest of an entity's content, used to skip writes that change nothing."""
    return hashlib.blake2b(dump_json(content, sort_keys=True), digest_size=16).hexdigest()


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; either accepted on input."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict the API returns: camelCase keys, null fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class WriteModel(WireModel):
    """What a writer sends: strict types (no "3" for 3), unknown keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Definition(WireModel):
    """The latest version of a workflow definition, keyed by its definition id."""

    id: str
    tenant_id: str = DEFAULT_TENANT_ID
    name: str
    version: int | None = None
    description: str | None = None
    activities: list[Any] | None = None
    connections: list[Any] | None = Field(
        default=None, description="A flowchart's connections between its activities (ELSA's)."
    )
    variables: list[Any] | None = None
    version_id: str | None = Field(default=None, description="ELSA's id of this version row.")
    is_published: bool | None = None
    is_latest: bool | None = None
    created_at: int | None = Field(default=None, description="When this version was created.")
    synced_at: int = Field(
        description="When tamma-sync last received it: every POST of it, even an unchanged "
        "one, and every sync batch that changed it."
    )
    revision: int = Field(description="Bumped on every stored change.")
    source_id: str | None = Field(default=None, description="The ELSA source it came from.")


class DefinitionWrite(WriteModel):
    """A definition as a writer sends it. Fields left as None keep their stored value."""

    id: EntityId
    name: Text | None = None
    version: Int32 | None = None
    description: Text | None = None
    activities: list[Any] | None = None
    connections: list[Any] | None = None
    variables: list[Any] | None = None
    version_id: ShortText | None = None
    is_published: bool | None = None
    is_latest: bool | None = None
    created_at: EpochMs | None = None
    source_id: SourceId | None = None


class Instance(WireModel):
    """A workflow instance as mirrored: the legacy `status` string next to the typed `subStatus`."""

    id: str
    definition_id: str
    tenant_id: str = DEFAULT_TENANT_ID
    status: str | None = Field(default=None, description="Exactly what the writer sent.")
    sub_status: SubStatus | None = Field(
        default=None, description="Typed state: from ELSA, or derived from a legacy status."
    )
    current_activity: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str | None = None
    name: str | None = None
    incident_count: int | None = None
    definition_version: int | None = None
    definition_version_id: str | None = None
    created_at: int
    updated_at: int
    finished_at: int | None = None
    revision: int = Field(description="Bumped on every stored change.")
    source_id: str | None = None

    @property
    def has_ended(self) -> bool:
        return self.sub_status in ENDED_SUB_STATUSES


class InstanceWrite(WriteModel):
    """A whole instance as a writer sends it: it replaces what is stored under its id.

    `sub_status` left as None is derived from `status`; `created_at`/`updated_at` left as
    None are stamped by the store.
    """

    id: EntityId
    definition_id: EntityId
    status: ShortText | None = None
    sub_status: SubStatusField | None = None
    current_activity: ActivityName | None = None
    variables: dict[str, Any] | None = None
    correlation_id: ShortText | None = None
    name: Text | None = None
    incident_count: Int32 | None = None
    definition_version: Int32 | None = None
    definition_version_id: ShortText | None = None
    created_at: EpochMs | None = None
    updated_at: EpochMs | None = None
    finished_at: EpochMs | None = None
    source_id: SourceId | None = None


class InstancePatch(WriteModel):
    """A partial update (the compatible PUT): None leaves a field as it is.

    `variables` replaces the stored dict, as the original API did (no deep merge).
    """

    status: ShortText | None = None
    sub_status: SubStatusField | None = None
    current_activity: ActivityName | None = None
    variables: dict[str, Any] | None = None
    updated_at: EpochMs | None = None
    finished_at: EpochMs | None = None

    def apply_to(self, current: Instance) -> InstanceWrite:
        """The whole instance after this patch; the store decides whether it changed.

        A new `status` without a `subStatus` re-derives the sub-status from it. `updatedAt`
        is left to the store (stamped only if the content changes) unless the patch sets it.
        """
        sub_status = self.sub_status
        if sub_status is None and self.status is None:
            sub_status = current.sub_status
        return InstanceWrite(
            id=current.id,
            definition_id=current.definition_id,
            status=self.status if self.status is not None else current.status,
            sub_status=sub_status,
            current_activity=(
                self.current_activity
                if self.current_activity is not None
                else current.current_activity
            ),
            variables=self.variables if self.variables is not None else current.variables,
            correlation_id=current.correlation_id,
            name=current.name,
            incident_count=current.incident_count,
            definition_version=current.definition_version,
            definition_version_id=current.definition_version_id,
            created_at=current.created_at,
            updated_at=self.updated_at,
            finished_at=self.finished_at,
            source_id=current.source_id,
        )


class EntityKind(StrEnum):
    DEFINITION = "definition"
    INSTANCE = "instance"


class ChangeOp(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Change(WireModel):
    """One row of the change log: what changed, and the entity as it was right after."""

    seq: int
    tenant_id: str
    entity: EntityKind
    entity_id: str
    op: ChangeOp
    revision: int
    at: int
    definition_id: str | None = None
    sub_status: SubStatus | None = None
    data: dict[str, Any]


#: The engine kind of an ELSA source in the engine registry (`SourceState.engine_report`).
ELSA_ENGINE_KIND: Final = "elsa"


class SyncPhase(StrEnum):
    """What a source's sync worker is doing."""

    SYNCING = "syncing"
    IDLE = "idle"
    ERROR = "error"
    STANDBY = "standby"
    """Another process holds this source's sync leadership."""


class SyncCounters(WireModel):
    """Running totals of a source's sync since its state was first stored."""

    cycles: Counter = 0
    failed_cycles: Counter = 0
    definitions_written: Counter = 0
    instances_written: Counter = 0
    instances_unchanged: Counter = 0
    deleted: Counter = 0
    details_fetched: Counter = 0
    rejected: Counter = 0
    """ELSA rows that could not be mirrored (a limit of ours, a row the database refuses,
    details ELSA keeps failing to give): each listed in `rejections`, then retried."""


#: Rejected rows a source's state lists (the newest); the counter counts them all.
MAX_LISTED_REJECTIONS: Final = 100
#: Longest reason given for a rejected row.
MAX_REJECTION_REASON: Final = 300


class Rejection(WireModel):
    """An ELSA row the sync could not mirror, and why. It is retried later, with backoff,
    and leaves the list once it is mirrored or gone from ELSA."""

    id: ShortText = Field(description="The instance or definition id (cut at 255 characters).")
    entity: EntityKind = EntityKind.INSTANCE
    reason: Annotated[str, StringConstraints(max_length=MAX_REJECTION_REASON)]
    at: EpochMs = Field(description="When it was last refused.")
    attempts: Annotated[int, Field(ge=1)] = 1


class InstancePosition(WireModel):
    """Where one of a source's mirrored instances stands: what the sync compares with ELSA."""

    id: str
    created_at: int
    updated_at: int
    sub_status: SubStatus | None = None


class SourceState(WireModel):
    """Where a source's sync stands: its delta cursor and its health.

    The cursor is ELSA's own `updatedAt` text (7 fractional digits) so it round-trips
    exactly: the newest `updatedAt` the sync has read. Each cycle reads again from the
    look-back window behind it, since ELSA stamps a change before it commits it.
    """

    source_id: EntityId
    phase: SyncPhase = SyncPhase.SYNCING
    url: ShortText | None = None
    studio_url: ShortText | None = Field(
        default=None, description="Elsa Studio for this ELSA, where configured."
    )
    elsa_version: EngineLabel | None = None
    cursor: Annotated[str, StringConstraints(pattern=ELSA_TIMESTAMP_PATTERN)] | None = None
    last_success_at: EpochMs | None = None
    last_error: Annotated[str, AfterValidator(clip_error)] | None = None
    last_error_at: EpochMs | None = None
    last_cycle_ms: Annotated[int, Field(ge=0)] | None = None
    reconciled_at: EpochMs | None = Field(
        default=None, description="When the last complete deletion sweep ended."
    )
    rejections: list[Rejection] = Field(
        default_factory=list,
        max_length=MAX_LISTED_REJECTIONS,
        description="Rows the sync could not mirror (the newest), each with its reason.",
    )
    poll_interval_seconds: Annotated[float, Field(gt=0, le=86_400)] | None = None
    counters: SyncCounters = Field(default_factory=SyncCounters)
    updated_at: EpochMs | None = None

    def engine_report(self) -> EngineReport:
        """How this source shows in the engine registry: an engine of kind `elsa`."""
        return EngineReport(
            name=self.url or self.source_id,
            kind=ELSA_ENGINE_KIND,
            version=self.elsa_version,
            state=self.phase.value,
            stats={
                "cursor": self.cursor,
                "lastSuccessAt": self.last_success_at,
                "lastError": self.last_error,
                "lastErrorAt": self.last_error_at,
                "lastCycleMs": self.last_cycle_ms,
                **self.counters.to_wire(),
            },
            heartbeat_interval_seconds=self.poll_interval_seconds,
        )


class SyncBatch(WriteModel):
    """One atomic step of a source's sync: rows, deletions and the state after them.

    Applying it twice is harmless: unchanged rows are skipped, deleting a deleted id is a
    no-op, and the state is overwritten with the same values.
    """

    source_id: Annotated[SourceId, StringConstraints(min_length=1), PATH_SAFE]
    definitions: list[DefinitionWrite] = Field(
        default_factory=list, max_length=MAX_BATCH_DEFINITIONS
    )
    instances: list[InstanceWrite] = Field(default_factory=list, max_length=MAX_BATCH_INSTANCES)
    deleted_definition_ids: list[EntityId] = Field(
        default_factory=list, max_length=MAX_BATCH_DELETIONS
    )
    deleted_instance_ids: list[EntityId] = Field(
        default_factory=list, max_length=MAX_BATCH_DELETIONS
    )
    state: SourceState | None = None


#: Tamma's engine event types; engines may send other strings too.
TAMMA_EVENT_TYPES: Final = (
    "ISSUE_SELECTED",
    "ISSUE_ANALYZED",
    "PLAN_GENERATED",
    "PLAN_APPROVED",
    "PLAN_REJECTED",
    "BRANCH_CREATED",
    "IMPLEMENTATION_STARTED",
    "IMPLEMENTATION_COMPLETED",
    "IMPLEMENTATION_FAILED",
    "PR_CREATED",
    "CI_CHECK_STARTED",
    "CI_CHECK_PASSED",
    "CI_CHECK_FAILED",
    "PR_MERGED",
    "ISSUE_CLOSED",
    "BRANCH_DELETED",
    "ERROR_OCCURRED",
    "STATE_TRANSITION",
)
#: Tamma's engine states (`EngineState`); engines may report other strings too.
TAMMA_ENGINE_STATES: Final = (
    "IDLE",
    "SELECTING_ISSUE",
    "ANALYZING",
    "PLANNING",
    "AWAITING_APPROVAL",
    "IMPLEMENTING",
    "CREATING_PR",
    "MONITORING",
    "MERGING",
    "ERROR",
)
#: An engine counts as offline once this many heartbeat intervals passed without one.
OFFLINE_AFTER_INTERVALS: Final = 3
DEFAULT_HEARTBEAT_INTERVAL_SECONDS: Final = 30.0


class EngineReport(WriteModel):
    """What an engine says about itself when it registers or heartbeats."""

    name: Text | None = None
    kind: EngineKind | None = None
    version: EngineLabel | None = None
    state: EngineLabel | None = Field(
        default=None,
        description="A Tamma engine state, or any other word.",
        examples=list(TAMMA_ENGINE_STATES),
    )
    stats: dict[str, Any] | None = None
    heartbeat_interval_seconds: float | None = Field(default=None, gt=0, le=86_400)


class Engine(WireModel):
    """A registered engine; `online` is derived from its last heartbeat when read."""

    id: str
    tenant_id: str = DEFAULT_TENANT_ID
    name: str | None = None
    kind: str | None = None
    version: str | None = None
    state: str | None = None
    stats: dict[str, Any] = Field(default_factory=dict)
    heartbeat_interval_seconds: float
    registered_at: int
    last_heartbeat_at: int
    online: bool = False

    def is_online(self, now: int) -> bool:
        """Its heartbeats keep coming, and it is not an ELSA source whose last cycle failed:
        the sync reports each source as an engine and goes on reporting it while ELSA fails,
        so a fresh heartbeat says the sync is alive, not that ELSA answers."""
        if self.kind == ELSA_ENGINE_KIND and self.state == SyncPhase.ERROR:
            return False
        deadline = self.heartbeat_interval_seconds * 1000 * OFFLINE_AFTER_INTERVALS
        return now - self.last_heartbeat_at <= deadline


class EngineEventWrite(WriteModel):
    """An event as an engine reports it (Tamma's shape); `id` and `timestamp` may be left
    to the server. Re-sending an event with the same id stores it once."""

    id: EntityId | None = None
    type: Annotated[EngineLabel, StringConstraints(min_length=1)] = Field(
        description="One of Tamma's event types, or any other name.",
        examples=list(TAMMA_EVENT_TYPES),
    )
    timestamp: EpochMs | None = None
    issue_number: Annotated[int, Field(ge=0, le=2**53)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class EngineEvent(WireModel):
    """A stored engine event, in Tamma's `EngineEvent` shape plus the engine's id."""

    id: str
    type: str
    timestamp: int
    tenant_id: str
    issue_number: int | None = None
    data: dict[str, Any]
    engine_id: str


class Scope(StrEnum):
    """What an API key may do (Tamma's permission names, plus sync and engine reporting)."""

    WORKFLOWS_VIEW = "workflows:view"
    WORKFLOWS_MANAGE = "workflows:manage"
    WORKFLOWS_DELETE = "workflows:delete"
    DASHBOARD_VIEW = "dashboard:view"
    SYNC_WRITE = "sync:write"
    ENGINES_REPORT = "engines:report"


class ApiKey(WireModel):
    """An API key as listed: never its secret, which is stored only as a hash."""

    id: str
    tenant_id: str
    name: str | None = None
    scopes: list[Scope]
    created_at: int
    revoked_at: int | None = None
