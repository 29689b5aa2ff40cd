"""Wire models and their mapping to domain models: tolerant reading, exact translation."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from tamma_sync.elsa import ElsaTimestamp, definition_write, instance_write
from tamma_sync.elsa.client import variables_from_state
from tamma_sync.elsa.mapping import root_activities
from tamma_sync.elsa.wire import (
    DefinitionPage,
    DefinitionSummary,
    InstanceDetail,
    InstancePage,
    LoginResponse,
    VariableList,
    VariableValue,
    WorkflowDefinition,
)
from tamma_sync.models import SubStatus

ORDER_APPROVAL_ROOT: dict[str, Any] = {
    "id": "85a5e1d9e487bfa4",
    "nodeId": "Workflow1:85a5e1d9e487bfa4",
    "type": "Elsa.Flowchart",
    "version": 1,
    "activities": [
        {"id": "a1", "type": "Elsa.WriteLine", "text": {"typeName": "String"}},
        {"id": "e1a2b3c4d5e6f708", "type": "Elsa.Event"},
    ],
    "connections": [{"source": {"activity": "a1", "port": "Done"}, "target": {"activity": "e1"}}],
}

FULL_DEFINITION: dict[str, Any] = {
    "id": "5ba5a7e36d60549b",
    "definitionId": "780fbf96f1bb1e7e",
    "name": "Order approval",
    "description": "Approves incoming orders",
    "createdAt": "2025-06-02T09:14:07.1234567+00:00",
    "version": 3,
    "toolVersion": "3.7.0.0",
    "variables": [
        {
            "id": "67fcb9870af4c28e",
            "name": "Decision",
            "typeName": "String",
            "isArray": False,
            "storageDriverTypeName": (
                "Elsa.Workflows.WorkflowInstanceStorageDriver, Elsa.Workflows.Core"
            ),
        },
    ],
    "inputs": [],
    "outcomes": [],
    "customProperties": {"logPersistenceConfig": {"default": "Include"}},
    "isReadonly": False,
    "isSystem": False,
    "isLatest": True,
    "isPublished": True,
    "options": {"autoUpdateConsumingWorkflows": False},
    "root": ORDER_APPROVAL_ROOT,
    "links": [{"href": "/workflow-definitions/780fbf96f1bb1e7e", "rel": "self", "method": "GET"}],
}

SUSPENDED_DETAIL: dict[str, Any] = {
    "id": "a3f1c0d9e8b7a601",
    "definitionId": "780fbf96f1bb1e7e",
    "definitionVersionId": "5ba5a7e36d60549b",
    "version": 3,
    "workflowState": {
        "id": "a3f1c0d9e8b7a601",
        "status": "Running",
        "subStatus": "Suspended",
        "bookmarks": [
            {
                "id": "c4d5",
                "name": "Elsa.Event",
                "hash": "1F2E",
                "payload": {"eventName": "X"},
                "activityId": "e1a2b3c4d5e6f708",
                "activityNodeId": "Workflow1:85a5:e1a2",
                "createdAt": "2025-06-04T08:00:02.0701000+00:00",
                "autoBurn": True,
            },
            {"id": "c4d6", "name": "Elsa.Delay", "activityId": "later"},
        ],
        "incidents": [],
        "activityExecutionContexts": [
            {
                "id": "inner",
                "callStackDepth": 2,
                "properties": {"Variables": {"67fcb9870af4c28e": "shadowed", "local1": 5}},
            },
            {
                "id": "root",
                "callStackDepth": 1,
                "properties": {"Variables": {"67fcb9870af4c28e": "pending-review"}},
            },
        ],
        "executionLogSequence": 7,
        "input": {"OrderId": "12345"},
    },
    "status": "Running",
    "subStatus": "Suspended",
    "isExecuting": False,
    "correlationId": "order-12345",
    "name": "Order approval",
    "incidentCount": 0,
    "isSystem": False,
    "createdAt": "2025-06-04T08:00:01.5010000+00:00",
    "updatedAt": "2025-06-04T08:00:02.0712345+00:00",
}


def _ms(text: str) -> int:
    return ElsaTimestamp.parse(text).epoch_ms


def test_definition_list_reads_the_documented_envelope_and_ignores_extras() -> None:
    body = {
        "items": [
            {
                "links": [{"href": "/x", "rel": "self", "method": "GET"}],
                "isMaterializerAvailable": True,
                "id": "2790068018ac4f01",
                "definitionId": "3790068018ac4f02",
                "name": "Send reminder",
                "version": 1,
                "isLatest": True,
                "isPublished": False,
                "materializerName": "Json",
                "createdAt": "2025-06-03T11:00:00+00:00",
                "isReadonly": False,
            },
        ],
        "totalCount": 14,
        "links": [],
    }
    page = DefinitionPage.model_validate_json(orjson.dumps(body))
    assert page.total_count == 14
    (summary,) = page.items
    assert summary.description is None  # omitted because null
    assert summary.is_published is False
    assert summary.created_at == ElsaTimestamp.parse("2025-06-03T11:00:00Z")


def test_missing_optional_fields_are_none_but_ids_and_items_are_required() -> None:
    page = InstancePage.model_validate_json(b'{"items":[{"id":"a","definitionId":"d"}]}')
    (row,) = page.items
    assert (row.status, row.sub_status, row.updated_at, row.version) == (None, None, None, None)
    assert page.total_count is None
    with pytest.raises(ValidationError):
        InstancePage.model_validate_json(b'{"totalCount": 3}')  # an empty-looking server
    with pytest.raises(ValidationError):
        InstancePage.model_validate_json(b'{"items":[{"definitionId":"d"}]}')


def test_small_shapes() -> None:
    variables = VariableList.model_validate_json(
        b'{"items":[{"id":"67fc","name":"Decision","value":"pending-review"}],"count":1}'
    )
    assert variables.items == [VariableValue(id="67fc", name="Decision", value="pending-review")]
    refused = LoginResponse.model_validate_json(b'{"isAuthenticated": false}')
    assert (refused.is_authenticated, refused.access_token) == (False, None)


def test_full_definition_maps_to_a_definition_write() -> None:
    model = WorkflowDefinition.model_validate(FULL_DEFINITION)
    write = definition_write(model, source_id="elsa-a")
    assert write.id == "780fbf96f1bb1e7e"
    assert write.version_id == "5ba5a7e36d60549b"
    assert (write.name, write.description, write.version) == (
        "Order approval",
        "Approves incoming orders",
        3,
    )
    assert write.activities == ORDER_APPROVAL_ROOT["activities"]
    assert write.variables == [FULL_DEFINITION["variables"][0]]  # verbatim, camelCase
    assert (write.is_published, write.is_latest) == (True, True)
    assert write.created_at == _ms("2025-06-02T09:14:07.1234567+00:00")
    assert write.source_id == "elsa-a"


def test_summary_only_leaves_activities_and_variables_to_the_store() -> None:
    summary = WorkflowDefinition.model_validate(FULL_DEFINITION).model_dump(exclude={"root"})
    write = definition_write(DefinitionSummary.model_validate(summary))
    assert write.activities is None
    assert write.variables is None
    assert write.id == "780fbf96f1bb1e7e"


@pytest.mark.parametrize(
    ("root", "activities"),
    [
        ({"type": "Elsa.Sequence", "activities": [{"id": "s1"}]}, [{"id": "s1"}]),
        ({"type": "Elsa.Flowchart", "activities": []}, []),
        ({"type": "Elsa.WriteLine", "id": "only"}, [{"type": "Elsa.WriteLine", "id": "only"}]),
        (None, None),
    ],
)
def test_root_activities(root: dict[str, Any] | None, activities: list[Any] | None) -> None:
    assert root_activities(root) == activities


def test_instance_detail_maps_status_current_activity_and_variables() -> None:
    detail = InstanceDetail.model_validate(SUSPENDED_DETAIL)
    write = instance_write(
        detail,
        variables=[
            VariableValue(id="67fc", name="Decision", value="pending-review"),
            VariableValue(id="anon", name=None, value=1),
        ],
        source_id="elsa-a",
    )
    assert write.id == "a3f1c0d9e8b7a601"
    assert write.definition_id == "780fbf96f1bb1e7e"
    assert write.status == "Running"
    assert write.sub_status is SubStatus.SUSPENDED
    assert write.current_activity == "e1a2b3c4d5e6f708"  # the first bookmark
    assert write.variables == {"Decision": "pending-review"}
    assert (write.correlation_id, write.name, write.incident_count) == (
        "order-12345",
        "Order approval",
        0,
    )
    assert (write.definition_version, write.definition_version_id) == (3, "5ba5a7e36d60549b")
    assert write.created_at == _ms("2025-06-04T08:00:01.5010000+00:00")
    assert write.updated_at == _ms("2025-06-04T08:00:02.0712345+00:00")
    assert write.finished_at is None
    assert write.source_id == "elsa-a"


def test_summary_with_separate_detail_and_finished_faulted_instance() -> None:
    page = InstancePage.model_validate(
        {
            "items": [
                {
                    "id": "b9e2",
                    "definitionId": "780f",
                    "status": "Finished",
                    "subStatus": "Faulted",
                    "incidentCount": 1,
                    "createdAt": "2025-06-03T17:45:00.100000+00:00",
                    "updatedAt": "2025-06-03T17:45:00.912000+00:00",
                    "finishedAt": "2025-06-03T17:45:00.912000+00:00",
                }
            ],
            "totalCount": 1,
        }
    )
    summary = page.items[0]
    no_bookmarks = InstanceDetail.model_validate(
        {
            "id": "b9e2",
            "definitionId": "780f",
            "workflowState": {
                "incidents": [
                    {
                        "activityId": "b039",
                        "activityType": "Elsa.SendHttpRequest",
                        "message": "Connection refused",
                        "timestamp": "2025-06-03T17:45:00.9+00:00",
                    }
                ]
            },
        }
    )
    write = instance_write(summary, detail=no_bookmarks)
    assert (write.status, write.sub_status) == ("Finished", SubStatus.FAULTED)
    assert write.current_activity is None
    assert write.variables is None  # not read: unknown, not empty
    assert write.finished_at == _ms("2025-06-03T17:45:00.912+00:00")
    assert instance_write(summary).current_activity is None


def test_unknown_sub_status_is_kept_out_of_the_typed_field_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each unknown sub-status is logged once, however many rows, steps and cycles read it
    (names of this test's own: the log is once per process)."""
    hibernating, dozing = (f"{name}{uuid.uuid4().hex[:8]}" for name in ("Hibernating", "Dozing"))
    rows = [
        InstanceDetail.model_validate(
            {"id": f"x{n}", "definitionId": "d", "status": "Running", "subStatus": sub}
        )
        for n, sub in enumerate([hibernating, hibernating, dozing, hibernating])
    ]
    with caplog.at_level(logging.WARNING, logger="tamma_sync.elsa.mapping"):
        writes = [instance_write(row) for row in rows] + [instance_write(rows[0])]
    assert [(write.status, write.sub_status) for write in writes] == [("Running", None)] * 5
    warned = [record.getMessage() for record in caplog.records]
    assert [sum(repr(sub) in line for line in warned) for sub in (hibernating, dozing)] == [1, 1]


def test_variables_from_state_use_declarations_and_the_outermost_context() -> None:
    detail = InstanceDetail.model_validate(SUSPENDED_DETAIL)
    definition = WorkflowDefinition.model_validate(FULL_DEFINITION)
    assert variables_from_state(detail, definition) == [
        VariableValue(id="67fcb9870af4c28e", name="Decision", value="pending-review")
    ]
    assert variables_from_state(detail, None) == []  # no names without declarations
