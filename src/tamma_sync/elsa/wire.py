"""Pydantic models of the ELSA 3 responses the mirror reads (and nothing it does not).

Tolerant by design: ELSA omits null properties, older versions lack newer fields, and
newer versions add some, so every field the mirror can live without defaults to None and
unknown keys are ignored. Only what a row cannot be mirrored without (ids, a list's
`items`) is required, so a truncated or foreign body fails loudly instead of looking like
an empty server. Keys are matched as ELSA sends them (camelCase); dictionaries inside
(`properties`, `Variables`, activity JSON) keep their keys verbatim.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tamma_sync.elsa.timestamps import ElsaTimestamp


class ElsaModel(BaseModel):
    """camelCase keys as ELSA writes them; unknown keys ignored; immutable once read."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class DefinitionSummary(ElsaModel):
    """One row of `GET /workflow-definitions`: one *version* of a definition."""

    id: str = Field(description="The version id.")
    definition_id: str
    name: str | None = None
    description: str | None = None
    version: int | None = None
    tool_version: str | None = None
    is_latest: bool | None = None
    is_published: bool | None = None
    materializer_name: str | None = None
    created_at: ElsaTimestamp | None = Field(default=None, description="This version's creation.")
    is_readonly: bool | None = None


class DefinitionPage(ElsaModel):
    items: list[DefinitionSummary]
    total_count: int | None = None


class VariableDeclaration(ElsaModel):
    """A variable declared by a definition. Extra keys are kept so it round-trips as sent."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    name: str | None = None
    type_name: str | None = None
    is_array: bool | None = None
    value: Any = None
    storage_driver_type_name: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The declaration as ELSA sent it (camelCase, nulls omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class WorkflowDefinition(DefinitionSummary):
    """The full model of one version (`by-id`, `many-by-id`). `root` stays opaque JSON."""

    tenant_id: str | None = None
    is_system: bool | None = None
    variables: list[VariableDeclaration] | None = None
    root: dict[str, Any] | None = None


class DefinitionList(ElsaModel):
    """`GET /workflow-definitions/many-by-id`."""

    items: list[WorkflowDefinition]
    count: int | None = None


class InstanceSummary(ElsaModel):
    """One row of the instance list; also the top level of the instance detail."""

    id: str
    definition_id: str
    definition_version_id: str | None = None
    version: int | None = Field(default=None, description="The definition version number.")
    status: str | None = Field(default=None, description="`Running` or `Finished`.")
    sub_status: str | None = Field(default=None, description="Kept as text; mapped leniently.")
    correlation_id: str | None = None
    name: str | None = None
    incident_count: int | None = None
    created_at: ElsaTimestamp | None = None
    updated_at: ElsaTimestamp | None = None
    finished_at: ElsaTimestamp | None = None


class InstancePage(ElsaModel):
    items: list[InstanceSummary]
    total_count: int | None = None


class Bookmark(ElsaModel):
    """Where a suspended instance waits: `activityId` is the node, `name` the trigger type."""

    id: str | None = None
    name: str | None = None
    activity_id: str | None = None
    activity_node_id: str | None = None
    created_at: ElsaTimestamp | None = None


class Incident(ElsaModel):
    activity_id: str | None = None
    activity_node_id: str | None = None
    activity_type: str | None = None
    message: str | None = None
    timestamp: ElsaTimestamp | None = None


class ActivityExecutionContext(ElsaModel):
    """Only what the pre-3.3 variables fallback needs: `properties["Variables"]` by variable id."""

    id: str | None = None
    call_stack_depth: int | None = None
    properties: dict[str, Any] | None = None


class WorkflowState(ElsaModel):
    bookmarks: list[Bookmark] = Field(default_factory=list)
    incidents: list[Incident] = Field(default_factory=list)
    activity_execution_contexts: list[ActivityExecutionContext] = Field(default_factory=list)


class InstanceDetail(InstanceSummary):
    """`GET /workflow-instances/{id}`."""

    is_system: bool | None = Field(default=None, description="A system workflow's (3.1+).")
    workflow_state: WorkflowState | None = None


class VariableValue(ElsaModel):
    """One item of `GET /workflow-instances/{id}/variables`."""

    id: str | None = None
    name: str | None = None
    value: Any = None


class VariableList(ElsaModel):
    items: list[VariableValue]
    count: int | None = None


class JournalRecord(ElsaModel):
    """One record of `GET /workflow-instances/{id}/journal`: an activity's event."""

    id: str | None = None
    activity_instance_id: str | None = None
    parent_activity_instance_id: str | None = None
    activity_id: str | None = None
    activity_type: str | None = None
    activity_name: str | None = None
    node_id: str | None = None
    timestamp: ElsaTimestamp | None = None
    sequence: int | None = None
    event_name: str | None = None
    message: str | None = None
    source: str | None = None


class JournalPage(ElsaModel):
    items: list[JournalRecord]
    total_count: int | None = None


class LoginResponse(ElsaModel):
    """`POST /identity/login` and `/identity/refresh-token`: 200 even when refused."""

    is_authenticated: bool = False
    access_token: str | None = None
    refresh_token: str | None = None


class PackageVersion(ElsaModel):
    package_version: str
