"""ELSA wire models → tamma-sync domain models: the one place the two vocabularies meet."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from tamma_sync.elsa.timestamps import ElsaTimestamp
from tamma_sync.elsa.wire import (
    DefinitionSummary,
    InstanceDetail,
    InstanceSummary,
    JournalRecord,
    VariableValue,
    WorkflowDefinition,
)
from tamma_sync.models import DefinitionWrite, InstanceWrite, SubStatus

logger = logging.getLogger(__name__)


def definition_write(
    definition: DefinitionSummary, *, source_id: str | None = None
) -> DefinitionWrite:
    """A definition version as the store's write model, keyed by its definition id.

    From a summary only, `activities`, `connections` and `variables` stay None (the store
    keeps what it has); a full `WorkflowDefinition` fills them.
    """
    activities: list[Any] | None = None
    connections: list[Any] | None = None
    variables: list[Any] | None = None
    if isinstance(definition, WorkflowDefinition):
        activities = root_activities(definition.root)
        connections = root_connections(definition.root)
        if definition.variables is not None:
            variables = [declared.as_json() for declared in definition.variables]
    return DefinitionWrite(
        id=definition.definition_id,
        version_id=definition.id,
        name=definition.name or definition.definition_id,
        description=definition.description,
        version=definition.version,
        activities=activities,
        connections=connections,
        variables=variables,
        is_published=definition.is_published,
        is_latest=definition.is_latest,
        created_at=epoch_ms(definition.created_at),
        source_id=source_id,
    )


def root_connections(root: dict[str, Any] | None) -> list[Any] | None:
    """A Flowchart's connections between its activities (`source`/`target` each name an
    activity and a port); None for a root that has none (a Sequence runs in order)."""
    connections = (root or {}).get("connections")
    return list(connections) if isinstance(connections, list) else None


def root_activities(root: dict[str, Any] | None) -> list[Any] | None:
    """The activities a dashboard lists: a Flowchart's or Sequence's children, else the root.

    Containers keep their children in `activities`; any other root activity is the whole
    workflow by itself.
    """
    if root is None:
        return None
    children = root.get("activities")
    return list(children) if isinstance(children, list) else [root]


def instance_write(
    instance: InstanceSummary,
    *,
    detail: InstanceDetail | None = None,
    variables: Sequence[VariableValue] | None = None,
    source_id: str | None = None,
) -> InstanceWrite:
    """An instance as the store's write model.

    `instance` may itself be the detail. The current activity is where the instance waits:
    the first bookmark's activity id (None without a detail or a bookmark). `variables`
    become a name → value dict; None or an empty answer leaves them as the mirror knows
    them: ELSA answers nothing for an instance that has not started, one it no longer
    holds the state of (3.1 drops an ended instance's contexts), or an unknown id, and
    none of those means the variables were cleared.
    """
    if detail is None and isinstance(instance, InstanceDetail):
        detail = instance
    state = detail.workflow_state if detail is not None else None
    bookmarks = state.bookmarks if state is not None else []
    return InstanceWrite(
        id=instance.id,
        definition_id=instance.definition_id,
        status=instance.status,
        sub_status=sub_status(instance.sub_status),
        current_activity=bookmarks[0].activity_id if bookmarks else None,
        variables=(variables_dict(variables) or None) if variables else None,
        correlation_id=instance.correlation_id,
        name=instance.name,
        incident_count=instance.incident_count,
        definition_version=instance.version,
        definition_version_id=instance.definition_version_id,
        created_at=epoch_ms(instance.created_at),
        updated_at=epoch_ms(instance.updated_at),
        finished_at=epoch_ms(instance.finished_at),
        source_id=source_id,
    )


def sub_status(text: str | None) -> SubStatus | None:
    """The typed sub-status; an unknown one (a newer ELSA) becomes None rather than an error."""
    if text is None:
        return None
    try:
        return SubStatus.parse(text)
    except ValueError:
        _warn_of_unknown_sub_status(text)
        return None


@functools.lru_cache(maxsize=64)
def _warn_of_unknown_sub_status(text: str) -> None:
    """Logged once per process for each unknown sub-status (of the last 64): a newer ELSA's
    would otherwise be logged for each of its rows, at every step that reads it, every
    cycle."""
    logger.warning("unknown ELSA subStatus %r; stored without a sub-status", text)


def variables_dict(variables: Sequence[VariableValue]) -> dict[str, Any]:
    """Name → value; unnamed entries are dropped (a name is the only key a dashboard shows)."""
    return {variable.name: variable.value for variable in variables if variable.name}


def journal_entry(record: JournalRecord) -> dict[str, Any]:
    """An execution journal record as the API shows it: its time in epoch ms."""
    return {
        "sequence": record.sequence,
        "at": epoch_ms(record.timestamp),
        "event": record.event_name,
        "activity_id": record.activity_id,
        "activity_type": record.activity_type,
        "activity_name": record.activity_name,
        "node_id": record.node_id,
        "message": record.message,
    }


def epoch_ms(timestamp: ElsaTimestamp | None) -> int | None:
    """ELSA's time as the mirror keeps it, in epoch milliseconds."""
    return timestamp.epoch_ms if timestamp is not None else None
