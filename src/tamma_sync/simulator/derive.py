"""Everything about an instance that is computed from (seed, row, state) instead of stored.

Names, correlation ids, variables, bookmarks, incidents, execution contexts and the journal
are pure functions of the row number and its small mutable state (sub-status, stage,
retries, timestamps), so a million instances need no per-instance objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tamma_sync.simulator.catalog import (
    INT32,
    JSON,
    Step,
    Template,
    bookmark_payload,
    root_id,
    variable_id,
    variables_of,
)
from tamma_sync.simulator.clock import TICKS_PER_SECOND, format_ticks
from tamma_sync.simulator.definitions import DefinitionRegistry, DefinitionVersion
from tamma_sync.simulator.ids import INSTANCE_KIND, IdCodec
from tamma_sync.simulator.instances import InstanceStore, SubStatus
from tamma_sync.simulator.values import MAX_RETRIES, VariableInputs, variable_values
from tamma_sync.simulator.versions import ContextPolicy, ElsaVersion

__all__ = ["MAX_RETRIES", "Deriver", "InstanceState"]

_IDENTITY: Final = 0x1D
_BOOKMARK: Final = 0xB0
_HASH: Final = 0xB1
_CONTEXT: Final = 0xC0
_ACTIVITY_INSTANCE: Final = 0xA1
_RECORD: Final = 0x10
_PLAN: Final = 0x9A


@dataclass(frozen=True, slots=True)
class InstanceState:
    """One live instance: its row and the stored part of its state."""

    row: int
    id: str
    version: DefinitionVersion
    sub_status: SubStatus
    stage: int
    retries: int
    created_at: int
    updated_at: int
    #: Status-free commits so far (realism): a variable's value follows it.
    edits: int = 0

    @property
    def finished_at(self) -> int | None:
        """Ended instances were last updated when they finished."""
        return self.updated_at if self.sub_status.ended else None


class Deriver:
    """Computes an instance's derived facts and renders its wire shapes."""

    def __init__(
        self,
        codec: IdCodec,
        registry: DefinitionRegistry,
        store: InstanceStore,
        release: ElsaVersion,
    ) -> None:
        self._codec = codec
        self._registry = registry
        self._store = store
        self._release = release

    def instance_id(self, row: int) -> str:
        """The id of an instance row."""
        return self._codec.encode(INSTANCE_KIND, row)

    def row_of(self, instance_id: str) -> int | None:
        """The live (committed) row behind an instance id, or None."""
        row = self._codec.decode(INSTANCE_KIND, instance_id)
        if row is None or not self._store.is_live(row):
            return None
        return row

    def decode(self, instance_id: str) -> int | None:
        """The row an instance id names (live or not), or None if it names none."""
        row = self._codec.decode(INSTANCE_KIND, instance_id)
        return row if row is not None and row < self._store.row_count else None

    def state(self, row: int) -> InstanceState:
        """Read a live row."""
        store = self._store
        version = self._registry.rows[store.version_row[row]]
        assert version is not None, "instances of deleted versions are deleted with them"
        return InstanceState(
            row=row,
            id=self.instance_id(row),
            version=version,
            sub_status=SubStatus(store.sub_status[row]),
            stage=store.stage[row],
            retries=store.retries[row],
            created_at=store.created_at(row),
            updated_at=store.updated_at(row),
            edits=store.edits.get(row, 0),
        )

    # -- identity ----------------------------------------------------------------------

    def _identity_hash(self, row: int) -> int:
        return self._codec.hash(_IDENTITY, row)

    def _number(self, row: int, template: Template) -> int:
        spread = 9000 if template.correlation_prefix == "STORY" else 2000
        return 1 + self._identity_hash(row) % spread

    def plan_id(self, row: int) -> str:
        """The alteration plan a system instance runs (its `Correlate(planId)`)."""
        return self._codec.hex_id(_PLAN, row)

    def correlation_id(self, row: int, template: Template) -> str | None:
        """Six in ten instances carry a business key as correlationId; an alteration
        plan's instance is correlated with its plan id."""
        if template.is_system:
            return self.plan_id(row)
        if (self._identity_hash(row) >> 20) % 10 >= 6:
            return None
        return f"{template.correlation_prefix}-{self._number(row, template)}"

    def name(self, row: int, template: Template) -> str | None:
        """Four in ten instances were started with a name (system ones never)."""
        if template.is_system or (self._identity_hash(row) >> 28) % 10 >= 4:
            return None
        return f"{template.name} #{self._number(row, template)}"

    def name_of_row(self, row: int) -> str | None:
        """The name of a live row (for ordering by Name)."""
        version = self._registry.rows[self._store.version_row[row]]
        return None if version is None else self.name(row, version.template)

    # -- progress ----------------------------------------------------------------------

    def current_step(self, state: InstanceState) -> Step:
        """The step the instance is at (or heading to; the last one once past every wait)."""
        waits = state.version.template.waits
        if state.stage < len(waits):
            return waits[state.stage]
        return state.version.template.steps[-1]

    def current_state(self, state: InstanceState) -> str:
        """The `currentState` variable: where in Tamma's state machine the instance is."""
        template = state.version.template
        if state.sub_status is SubStatus.Pending:
            return template.initial_state
        if state.sub_status is SubStatus.Finished:
            return template.final_state
        step = self.current_step(state)
        if state.retries and step.retry_states:
            return step.retry_states[(state.retries - 1) % len(step.retry_states)]
        return step.state or template.initial_state

    def waiting_step(self, state: InstanceState) -> Step | None:
        """The step holding the bookmark: only a suspended instance waits."""
        if state.sub_status is not SubStatus.Suspended:
            return None
        return self.current_step(state)

    def incident_count(self, sub_status: SubStatus, retries: int) -> int:
        """Faulted instances carry one incident, two if they had retried before."""
        if sub_status is not SubStatus.Faulted:
            return 0
        return 2 if retries >= 2 else 1

    # -- variables ---------------------------------------------------------------------

    def variables(self, state: InstanceState) -> list[tuple[str, str, JSON]]:
        """(variable id, name, value) of every declared variable; None = unset."""
        template = state.version.template
        values = self._values(state)
        result: list[tuple[str, str, JSON]] = []
        for spec in variables_of(template, state.version.revision):
            if spec.name in values:
                value = values[spec.name]
            elif spec.default is not None and spec.type_name == INT32:
                value = int(spec.default)
            else:
                value = spec.default
            result.append((variable_id(self._codec, template, spec.name), spec.name, value))
        return result

    def has_state_variables(self, state: InstanceState) -> bool:
        """Whether the workflow state holds the variables (in its root context) on this
        release: not while Pending (no context yet), nor on 3.1 once Finished or
        Cancelled (it keeps no completed context)."""
        if state.sub_status is SubStatus.Pending:
            return False
        ended_without_contexts = state.sub_status in (SubStatus.Finished, SubStatus.Cancelled)
        return not (ended_without_contexts and self._release.contexts is ContextPolicy.ACTIVE)

    def _values(self, state: InstanceState) -> dict[str, JSON]:
        template = state.version.template
        return variable_values(
            self._codec,
            VariableInputs(
                row=state.row,
                template=template,
                revision=state.version.revision,
                sub_status=state.sub_status,
                stage=state.stage,
                retries=state.retries,
                edits=state.edits,
                number=self._number(state.row, template),
                current_state=self.current_state(state),
                plan_id=self.plan_id(state.row),
            ),
        )

    # -- wire shapes -------------------------------------------------------------------

    def summary(self, row: int) -> dict[str, JSON]:
        """A `WorkflowInstanceSummary` (hot path of every list page)."""
        store = self._store
        version = self._registry.rows[store.version_row[row]]
        assert version is not None
        sub_status = SubStatus(store.sub_status[row])
        item: dict[str, JSON] = {
            "id": self.instance_id(row),
            "definitionId": version.definition_id,
            "definitionVersionId": version.id,
            "version": version.version,
            "status": sub_status.status,
            "subStatus": sub_status.name,
        }
        correlation_id = self.correlation_id(row, version.template)
        if correlation_id is not None:
            item["correlationId"] = correlation_id
        name = self.name(row, version.template)
        if name is not None:
            item["name"] = name
        updated = store.updated_at(row)
        item["incidentCount"] = self.incident_count(sub_status, store.retries[row])
        item["createdAt"] = format_ticks(store.created_at(row))
        item["updatedAt"] = format_ticks(updated)
        if sub_status.ended:
            item["finishedAt"] = format_ticks(updated)
        return item

    def execution_state(self, state: InstanceState) -> dict[str, JSON]:
        """`GET /workflow-instances/{id}/execution-state`."""
        return {
            "status": state.sub_status.status,
            "subStatus": state.sub_status.name,
            "updatedAt": format_ticks(state.updated_at),
        }

    def variables_response(self, state: InstanceState) -> dict[str, JSON]:
        """`GET /workflow-instances/{id}/variables` (null values omitted, as ELSA does)."""
        items: list[JSON] = []
        for variable, name, value in self.variables(state):
            item: dict[str, JSON] = {"id": variable, "name": name}
            if value is not None:
                item["value"] = value
            items.append(item)
        return {"items": items, "count": len(items)}

    def detail(self, state: InstanceState) -> dict[str, JSON]:
        """The `WorkflowInstanceModel` with its `workflowState`."""
        version = state.version
        template = version.template
        correlation_id = self.correlation_id(state.row, template)
        name = self.name(state.row, template)
        status, sub_status = state.sub_status.status, state.sub_status.name
        executing = state.sub_status is SubStatus.Executing
        incidents = self._incidents(state)
        head: dict[str, JSON] = {
            "id": state.id,
            "definitionId": version.definition_id,
            "definitionVersionId": version.id,
        }
        optional: dict[str, JSON] = {}
        if correlation_id is not None:
            optional["correlationId"] = correlation_id
        if name is not None:
            optional["name"] = name
        times: dict[str, JSON] = {
            "createdAt": format_ticks(state.created_at),
            "updatedAt": format_ticks(state.updated_at),
        }
        if state.finished_at is not None:
            times["finishedAt"] = format_ticks(state.finished_at)
        contexts, callbacks, scheduled = self._execution(state)
        # `IsSystem` exists from 3.1.0 (src/modules/Elsa.Workflows.Core/State/WorkflowState.cs).
        system: dict[str, JSON] = (
            {"isSystem": template.is_system} if self._release.has_system_workflows else {}
        )
        workflow_state: dict[str, JSON] = {
            **head,
            "definitionVersion": version.version,
            **optional,
            "status": status,
            "subStatus": sub_status,
            "isExecuting": executing,
            **system,
            "bookmarks": self._bookmarks(state),
            "incidents": incidents,
            "completionCallbacks": callbacks,
            "activityExecutionContexts": contexts,
            "scheduledActivities": scheduled,
            "executionLogSequence": len(self.journal(state)),
            "input": self._input(state),
            "output": {"Result": self.current_state(state)}
            if state.sub_status is SubStatus.Finished
            else {},
            "properties": {},
            **times,
        }
        return {
            **head,
            "version": version.version,
            "workflowState": workflow_state,
            "status": status,
            "subStatus": sub_status,
            "isExecuting": executing,
            **optional,
            "incidentCount": len(incidents),
            **system,
            **times,
        }

    def _node(self, state: InstanceState, step: Step | None = None) -> str:
        root = f"Workflow1:{root_id(self._codec, state.version.template)}"
        return root if step is None else f"{root}:{step.activity_id}"

    def _position(self, state: InstanceState) -> int:
        """Index of the current step among the version's top-level steps."""
        steps = self._registry.steps(state.version)
        target = self.current_step(state).activity_id
        return next(i for i, step in enumerate(steps) if step.activity_id == target)

    def _activity_instance(self, state: InstanceState, position: int) -> str:
        return self._codec.hex_id(_ACTIVITY_INSTANCE, state.row, position)

    def _input(self, state: InstanceState) -> dict[str, JSON]:
        number = self._number(state.row, state.version.template)
        if state.version.template.correlation_prefix == "STORY":
            return {"StoryId": f"STORY-{number}"}
        return {"IssueNumber": number}

    def _bookmarks(self, state: InstanceState) -> list[JSON]:
        step = self.waiting_step(state)
        if step is None:
            return []
        parts = (state.row, state.stage, state.retries)
        digest = "".join(f"{self._codec.hash(_HASH, *parts, k):016X}" for k in range(4))
        correlation = self.correlation_id(state.row, state.version.template) or state.id
        return [
            {
                "id": self._codec.hex_id(_BOOKMARK, *parts),
                "name": step.wait,
                "hash": digest,
                "payload": bookmark_payload(step, correlation),
                "activityId": step.activity_id,
                "activityNodeId": self._node(state, step),
                "activityInstanceId": self._activity_instance(state, self._position(state)),
                "createdAt": format_ticks(state.updated_at),
                "autoBurn": True,
                "autoComplete": True,
            }
        ]

    def _incidents(self, state: InstanceState) -> list[JSON]:
        count = self.incident_count(state.sub_status, state.retries)
        step = self.current_step(state)
        exception_type, message = _failure(step.type)
        return [
            {
                "activityId": step.activity_id,
                "activityNodeId": self._node(state, step),
                "activityType": step.type,
                "message": message,
                "exception": {
                    "type": exception_type,
                    "message": message,
                    "stackTrace": f"   at {step.type}.ExecuteAsync(ActivityExecutionContext c)",
                },
                "timestamp": format_ticks(state.updated_at - (count - 1 - k) * TICKS_PER_SECOND),
            }
            for k in range(count)
        ]

    def _execution(self, state: InstanceState) -> tuple[list[JSON], list[JSON], list[JSON]]:
        """Activity execution contexts, completion callbacks and scheduled activities.

        A pending instance has no context yet. A running one has its root Workflow context
        (holding the variables under its storage driver's key, by variable id) and the
        current step's. An ended one keeps what its release persists (versions.py,
        ContextPolicy): 3.0 everything, 3.1 the contexts not completed (a Faulted one is
        not), 3.2+ those plus the root.
        """
        if state.sub_status is SubStatus.Pending:
            return [], [], [{"activityNodeId": self._node(state), "input": {}}]
        root_status, step_status = _CONTEXT_STATUS[state.sub_status]
        policy = self._release.contexts
        keep_root = policy is not ContextPolicy.ACTIVE or root_status not in _COMPLETED
        keep_step = policy is ContextPolicy.ALL or step_status not in _COMPLETED
        if not keep_root:
            return [], [], []
        root_context = self._codec.hex_id(_CONTEXT, state.row, 0)
        executing = state.sub_status is SubStatus.Executing
        step = self.current_step(state)
        span = state.updated_at - state.created_at
        started = format_ticks(state.created_at + span // 10)
        variables = {
            variable: value for variable, _, value in self.variables(state) if value is not None
        }
        key = self._release.variables_key(state.version.legacy_storage)
        contexts: list[JSON] = [
            {
                "id": root_context,
                "callStackDepth": 1,
                "scheduledActivityNodeId": self._node(state),
                "ownerActivityNodeId": "Workflow1",
                "properties": {key: variables},
                "metadata": {},
                "dynamicVariables": [],
                "status": root_status,
                "isExecuting": executing,
                "faultCount": 0,
                "startedAt": started,
            }
        ]
        if not keep_step:
            return contexts, [], []
        contexts.append(
            {
                "id": self._codec.hex_id(_CONTEXT, state.row, 1 + state.stage),
                "callStackDepth": 2,
                "parentContextId": root_context,
                "scheduledActivityNodeId": self._node(state, step),
                "ownerActivityNodeId": self._node(state),
                "properties": {},
                "metadata": {},
                "dynamicVariables": [],
                "status": step_status,
                "isExecuting": executing,
                "faultCount": 1 if step_status == "Faulted" else 0,
                "startedAt": format_ticks(state.updated_at - span // 20),
            }
        )
        callbacks: list[JSON] = (
            [
                {
                    "ownerInstanceId": root_context,
                    "childNodeId": self._node(state, step),
                    "methodName": "OnChildCompletedAsync",
                }
            ]
            if step_status not in _COMPLETED
            else []
        )
        scheduled: list[JSON] = (
            [
                {
                    "activityNodeId": self._node(state, step),
                    "ownerContextId": root_context,
                    "input": {},
                }
            ]
            if executing
            else []
        )
        return contexts, callbacks, scheduled

    def journal(self, state: InstanceState) -> list[JSON]:
        """The execution log, derived from how far the instance got (ordered by sequence)."""
        if state.sub_status is SubStatus.Pending:
            return []
        steps = self._registry.steps(state.version)
        current = self._position(state)
        workflow_ai = self._activity_instance(state, -2)
        root_ai = self._activity_instance(state, -1)
        template = state.version.template
        root_type = template.root_type
        events: list[tuple[str, str, str, str, str | None, str]] = [
            (state.id, "Elsa.Workflow", "Workflow1", workflow_ai, None, "Started"),
            (
                root_id(self._codec, template),
                root_type,
                self._node(state),
                root_ai,
                workflow_ai,
                "Started",
            ),
        ]
        finished = state.sub_status is SubStatus.Finished
        for position, step in enumerate(steps[: current + 1]):
            node = self._node(state, step)
            ai = self._activity_instance(state, position)
            base = (step.activity_id, step.type, node, ai, root_ai)
            names = ["Started"]
            passed = position < current or finished
            if step.wait is not None and (passed or state.sub_status is SubStatus.Suspended):
                names.append("Suspended")
                if passed:
                    names.append("Resumed")
            if passed:
                names.append("Completed")
            elif state.sub_status is SubStatus.Faulted:
                names.append("Faulted")
            elif state.sub_status is SubStatus.Cancelled:
                names.append("Canceled")
            events += [(*base, name) for name in names]
        if finished:
            events.append((*events[1][:5], "Completed"))
            events.append((*events[0][:5], "Completed"))
        span = state.updated_at - state.created_at
        records: list[JSON] = []
        for sequence, (activity_id, type_, node, ai, parent, event) in enumerate(events):
            fraction = (sequence + 1) / len(events)
            record: dict[str, JSON] = {
                "id": self._codec.hex_id(_RECORD, state.row, sequence),
                "activityInstanceId": ai,
            }
            if parent is not None:
                record["parentActivityInstanceId"] = parent
            record |= {
                "activityId": activity_id,
                "activityType": type_,
                "activityTypeVersion": 1,
                "activityName": type_.rsplit(".", 1)[-1] + "1",
                "nodeId": node,
                "timestamp": format_ticks(state.created_at + int(span * fraction)),
                "sequence": sequence,
                "eventName": event,
            }
            records.append(record)
        return records


def _failure(activity_type: str) -> tuple[str, str]:
    """A plausible exception (type, message) for an activity of this type."""
    if activity_type.startswith("Tamma.AI."):
        return (
            _HTTP_ERROR,
            "Response status code does not indicate success: 429 (Too Many Requests).",
        )
    if activity_type.startswith("Tamma.Integration."):
        return _HTTP_ERROR, "Connection refused (api.github.com:443)"
    if activity_type == "Elsa.RunTask":
        return "System.TimeoutException, System.Private.CoreLib", "The task timed out."
    return "System.NullReferenceException, System.Private.CoreLib", _NULL_REFERENCE


_HTTP_ERROR: Final = "System.Net.Http.HttpRequestException, System.Net.Http"
#: (root, current step) context status per sub-status of a started instance; a fault
#: leaves the faulted step's context Faulted and its ancestors running.
_CONTEXT_STATUS: Final = {
    SubStatus.Executing: ("Running", "Running"),
    SubStatus.Suspended: ("Running", "Running"),
    SubStatus.Finished: ("Completed", "Completed"),
    SubStatus.Cancelled: ("Canceled", "Canceled"),
    SubStatus.Faulted: ("Running", "Faulted"),
}
#: `ActivityExecutionContext.IsCompleted`: Completed or Canceled, not Faulted
#: (src/modules/Elsa.Workflows.Core/Contexts/ActivityExecutionContext.cs).
_COMPLETED: Final = frozenset({"Completed", "Canceled"})
_NULL_REFERENCE: Final = "Object reference not set to an instance of an object."
