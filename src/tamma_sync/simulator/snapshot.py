"""The ground truth a mirror must equal, as plain typed values.

Timestamps are ELSA's own strings (exactly what the API served), so a comparison goes
through the same parser the mirror uses. Variables are a name -> value dict with unset
variables as None (the API omits their `value`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tamma_sync.simulator.catalog import JSON


@dataclass(frozen=True, slots=True)
class DefinitionTruth:
    """The latest version of one definition (what `versionOptions=Latest` lists)."""

    definition_id: str
    version_id: str
    version: int
    name: str
    description: str | None
    is_published: bool
    is_latest: bool
    #: The root activity's `activities` (top-level activity JSON objects).
    activities: list[JSON]
    #: A Flowchart root's `connections` (None for other roots).
    connections: list[JSON] | None
    #: The model's `variables` entries.
    variables: list[JSON]
    #: ELSA's own system workflow (`isSystem: true` in its model).
    is_system: bool = False

    def to_wire(self) -> dict[str, JSON]:
        """camelCase JSON for the control API."""
        return {
            "definitionId": self.definition_id,
            "versionId": self.version_id,
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "isPublished": self.is_published,
            "isLatest": self.is_latest,
            "activities": self.activities,
            "variables": self.variables,
            "isSystem": self.is_system,
        }


@dataclass(frozen=True, slots=True)
class InstanceTruth:
    """One instance: its summary fields plus what a mirror derives from its details."""

    id: str
    definition_id: str
    definition_version_id: str
    version: int
    status: str
    sub_status: str
    correlation_id: str | None
    name: str | None
    incident_count: int
    created_at: str
    updated_at: str
    finished_at: str | None
    #: The first bookmark's activityId (None when nothing waits, when details were not
    #: asked for, or when ELSA cannot load the instance's details).
    current_activity: str | None
    #: Variable name -> value; None when details were not asked for or when ELSA cannot
    #: tell an observer the variables (a poisoned instance, a Pending one, a state that
    #: holds no variables on this release): a mirror then keeps what it saw last.
    variables: dict[str, JSON] | None
    #: An instance of a system workflow (`isSystem: true` in its detail).
    is_system: bool = False

    def to_wire(self) -> dict[str, JSON]:
        """camelCase JSON for the control API."""
        return {
            "id": self.id,
            "definitionId": self.definition_id,
            "definitionVersionId": self.definition_version_id,
            "version": self.version,
            "status": self.status,
            "subStatus": self.sub_status,
            "correlationId": self.correlation_id,
            "name": self.name,
            "incidentCount": self.incident_count,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "finishedAt": self.finished_at,
            "currentActivity": self.current_activity,
            "variables": self.variables,
            "isSystem": self.is_system,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Definitions (all) and instances (a window over them, oldest first)."""

    now: str
    definitions: dict[str, DefinitionTruth]
    instances: dict[str, InstanceTruth]
    #: Live instances in total (the window may hold fewer).
    instance_count: int

    def to_wire(self) -> dict[str, JSON]:
        """camelCase JSON for the control API."""
        return {
            "now": self.now,
            "instanceCount": self.instance_count,
            "definitions": {key: value.to_wire() for key, value in self.definitions.items()},
            "instances": [value.to_wire() for value in self.instances.values()],
        }


@dataclass(frozen=True, slots=True)
class StepReport:
    """What `step()` changed: ids of created instances, of instances that moved on, and
    (with realism) of deleted ones and of those with a status-free commit."""

    created: list[str]
    updated: list[str]
    deleted: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CommitEvent:
    """A commit as it becomes visible (realism's commit lag), for
    `ElsaSimulator.commit_observer`: benchmarks time how long a mirror takes to show it."""

    instance_id: str
    #: "create", "update" (a status change) or "silent" (a status-free commit).
    kind: str
    #: The sub-status name after the commit.
    sub_status: str
    #: ELSA's `updatedAt` text after the commit (a silent commit keeps the previous one).
    updated_at: str
    #: An instance of a system workflow.
    is_system: bool
    #: `time.monotonic()` at which the commit became visible: its due time, or the flush
    #: that made it visible earlier.
    visible_at: float


@dataclass(frozen=True, slots=True)
class DraftSaved:
    """Result of saving a draft: the version row, and whether it was edited in place."""

    version_id: str
    version: int
    in_place: bool
