"""`GET /api/workflows/definitions/{id}/activities`: where a definition's running instances
are, per activity and sub-status, over real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx

from tamma_sync.models import (
    DEFAULT_TENANT_ID,
    DefinitionWrite,
    InstanceWrite,
    SubStatus,
    WorkflowStatus,
)
from tamma_sync.store import Store
from tamma_sync.store.tables import RUNNING_SUB_STATUSES

INSTANCES = "/api/workflows/instances"


def activities(client: httpx.Client, definition_id: str = "orders") -> dict[str, Any]:
    response = client.get(f"/api/workflows/definitions/{definition_id}/activities")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post(client: httpx.Client, instance_id: str, **fields: Any) -> None:
    body = {"id": instance_id, "definitionId": "orders", "status": "Running", **fields}
    response = client.post(INSTANCES, json=body)
    assert response.status_code == 201, response.text


def put(client: httpx.Client, instance_id: str, **fields: Any) -> None:
    response = client.put(f"{INSTANCES}/{instance_id}", json=fields)
    assert response.status_code == 200, response.text


def seed(client: httpx.Client) -> None:
    """Running instances at three activities and at none, and what must never count."""
    for instance_id, sub_status, activity in [
        ("r1", "Suspended", "review"),
        ("r2", "Suspended", "review"),
        ("r3", "Executing", "review"),
        ("p1", "Pending", "intake"),
        ("i1", "Interrupted", "ship"),
        ("e1", "Executing", "Review"),  # activity ids are case-sensitive
        ("f1", "Finished", "review"),
        ("c1", "Cancelled", "review"),
        ("x1", "Faulted", "intake"),
        ("gone", "Suspended", "review"),
    ]:
        post(client, instance_id, subStatus=sub_status, currentActivity=activity)
    post(client, "n1", subStatus="Executing")
    post(client, "n2", subStatus="Suspended")
    post(client, "untyped", status="whatever", currentActivity="review")  # no sub-status
    post(
        client, "elsewhere", definitionId="billing", subStatus="Suspended", currentActivity="review"
    )
    assert client.delete(f"{INSTANCES}/gone").status_code == 200


def test_running_instances_per_activity_and_sub_status(client: httpx.Client) -> None:
    seed(client)
    assert activities(client) == {
        "definitionId": "orders",
        "activities": [
            {"activityId": "review", "running": 3, "bySubStatus": {"Suspended": 2, "Executing": 1}},
            {"activityId": "Review", "running": 1, "bySubStatus": {"Executing": 1}},
            {"activityId": "intake", "running": 1, "bySubStatus": {"Pending": 1}},
            {"activityId": "ship", "running": 1, "bySubStatus": {"Interrupted": 1}},
        ],
        "withoutActivity": 2,
        "running": 8,
    }
    assert activities(client, "billing")["activities"] == [
        {"activityId": "review", "running": 1, "bySubStatus": {"Suspended": 1}}
    ]


def test_the_counts_agree_with_the_running_list(client: httpx.Client) -> None:
    seed(client)
    body = activities(client)
    running = {"definitionId": "orders", "status": "Running"}
    assert client.get(INSTANCES, params=running).json()["total"] == body["running"]
    for activity in body["activities"]:
        listed = client.get(
            INSTANCES, params={**running, "currentActivity": activity["activityId"]}
        )
        assert listed.json()["total"] == activity["running"], activity


def test_moved_ended_and_deleted_instances_follow(client: httpx.Client) -> None:
    seed(client)
    put(client, "r3", currentActivity="ship")
    put(client, "r1", subStatus="Finished")
    put(client, "f1", subStatus="Executing")  # back to running, still at review
    assert client.delete(f"{INSTANCES}/r2").status_code == 200
    assert client.delete(f"{INSTANCES}/n1").status_code == 200
    put(client, "n2", currentActivity="intake")
    assert activities(client) == {
        "definitionId": "orders",
        "activities": [
            {"activityId": "intake", "running": 2, "bySubStatus": {"Pending": 1, "Suspended": 1}},
            {"activityId": "ship", "running": 2, "bySubStatus": {"Executing": 1, "Interrupted": 1}},
            {"activityId": "Review", "running": 1, "bySubStatus": {"Executing": 1}},
            {"activityId": "review", "running": 1, "bySubStatus": {"Executing": 1}},
        ],
        "withoutActivity": 0,
        "running": 6,
    }


def test_nothing_running_is_zeros_and_nothing_known_is_a_404(client: httpx.Client) -> None:
    empty = {"activities": [], "withoutActivity": 0, "running": 0}
    created = client.post("/api/workflows/definitions", json={"id": "orders", "name": "Orders"})
    assert created.status_code == 201
    assert activities(client) == {"definitionId": "orders", **empty}
    # Known only from its instances, all of them ended.
    post(client, "done", definitionId="from-elsa", subStatus="Finished", currentActivity="end")
    assert activities(client, "from-elsa") == {"definitionId": "from-elsa", **empty}
    # Its only instance deleted: nothing of it is left.
    post(client, "once", definitionId="forgotten", subStatus="Suspended", currentActivity="a")
    assert client.delete(f"{INSTANCES}/once").status_code == 200
    for unknown in ("forgotten", "nope", "ORDERS"):
        response = client.get(f"/api/workflows/definitions/{unknown}/activities")
        assert response.status_code == 404, unknown
        assert response.json() == {"error": "Definition not found"}


async def test_the_store_tells_nothing_running_from_unknown(store: Store) -> None:
    tenant = DEFAULT_TENANT_ID
    assert await store.running_by_activity(tenant, "orders") is None
    await store.upsert_definitions(tenant, [DefinitionWrite(id="orders", name="Orders")])
    assert await store.running_by_activity(tenant, "orders") == {}
    await store.put_instances(
        tenant,
        [
            InstanceWrite(id="a", definition_id="orders", sub_status=SubStatus.SUSPENDED),
            InstanceWrite(
                id="b", definition_id="orders", sub_status=SubStatus.PENDING, current_activity="x"
            ),
        ],
    )
    assert await store.running_by_activity(tenant, "orders") == {
        None: {SubStatus.SUSPENDED: 1},
        "x": {SubStatus.PENDING: 1},
    }
    assert await store.running_by_activity("another-tenant", "orders") is None


def test_the_running_index_holds_every_running_sub_status() -> None:
    """The index's WHERE names them as literals: a new running sub-status needs a migration."""
    running = {s.value for s in SubStatus if s.status is WorkflowStatus.RUNNING}
    assert set(RUNNING_SUB_STATUSES) == running


def test_both_databases_take_the_longest_activity_and_refuse_a_longer_one(
    client: httpx.Client,
) -> None:
    """The activity is a key of PostgreSQL's running index (entries of at most 2,704 bytes):
    500 characters of 4 bytes each fit; one more is a 400 on either database, not a 500."""
    longest = "\U0001f600" * 500  # 2,000 bytes of UTF-8, no compression to help
    post(client, "long", subStatus="Executing", currentActivity=longest)
    assert activities(client)["activities"][0]["activityId"] == longest
    too_long = {"id": "longer", "definitionId": "orders", "currentActivity": "x" * 501}
    refused = client.post("/api/workflows/instances", json=too_long)
    assert refused.status_code == 400, refused.text
    assert "currentActivity" in refused.json()["error"]
    moved = client.put("/api/workflows/instances/long", json={"currentActivity": "y" * 501})
    assert moved.status_code == 400, moved.text
    assert activities(client)["activities"][0]["activityId"] == longest
