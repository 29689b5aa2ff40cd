"""The ground truth a mirror must equal, as plain typed values.

Timestamps are ELSA's own strings (exactly what the API served), so a comparison goes
through the same parser the mirror uses. Variables are a name -> value dict with unset
variables as None (the API omits their `value`).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    #: The model's `variables` entries.
    variables: list[JSON]

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
    #: The first bookmark's activityId (None when nothing waits), if details were asked for.
    current_activity: str | None
    #: Variable name -> value, if details were asked for (None otherwise).
    variables: dict[str, JSON] | None

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
    """What `step()` changed: ids of created instances and of instances that moved on."""

    created: list[str]
    updated: list[str]


@dataclass(frozen=True, slots=True)
class DraftSaved:
    """Result of saving a draft: the version row, and whether it was edited in place."""

    version_id: str
    version: int
    in_place: bool
