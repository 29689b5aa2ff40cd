"""`/api/sync/batch` and friends over HTTP: idempotent, atomic, bounded, source-scoped."""

from __future__ import annotations

from typing import Any

import httpx

from tamma_sync.models import DEFAULT_TENANT_ID

BATCH: dict[str, Any] = {
    "sourceId": "elsa-a",
    "definitions": [{"id": "wf", "name": "Flow", "version": 2, "versionId": "v2"}],
    "instances": [
        {
            "id": f"i{n}",
            "definitionId": "wf",
            "status": "Running",
            "subStatus": "Suspended",
            "createdAt": 1000 + n,
            "updatedAt": 2000 + n,
        }
        for n in range(5)
    ],
    "state": {"sourceId": "elsa-a", "phase": "idle", "cursor": "2025-06-02T09:00:00.1234567+00:00"},
}


def test_batch_is_idempotent(client: httpx.Client) -> None:
    first = client.post("/api/sync/batch", json=BATCH)
    assert first.status_code == 200, first.text
    assert first.json() == {"created": 6, "updated": 0, "unchanged": 0, "deleted": 0}
    again = client.post("/api/sync/batch", json=BATCH)
    assert again.json() == {"created": 0, "updated": 0, "unchanged": 6, "deleted": 0}
    instance = client.get("/api/workflows/instances/i3").json()
    assert (instance["subStatus"], instance["sourceId"], instance["revision"]) == (
        "Suspended",
        "elsa-a",
        1,
    )
    status = client.get("/api/sync/status").json()["sources"]
    assert status[0]["cursor"] == "2025-06-02T09:00:00.1234567+00:00"
    assert status[0]["tenantId"] == DEFAULT_TENANT_ID, "the open server's tenant"
    assert status[0]["counts"] == {"definitions": 1, "instances": 5}


def test_deletions_only_touch_the_batch_source(client: httpx.Client) -> None:
    client.post("/api/sync/batch", json=BATCH)
    client.post("/api/workflows/instances", json={"id": "local", "definitionId": "wf"})
    other = client.post(
        "/api/sync/batch",
        json={
            "sourceId": "elsa-b",
            "deletedInstanceIds": ["i0", "local"],
            "deletedDefinitionIds": ["wf"],
        },
    )
    assert other.json()["deleted"] == 0, "source b cannot delete what a or a writer stored"
    mine = client.post(
        "/api/sync/batch", json={"sourceId": "elsa-a", "deletedDefinitionIds": ["wf"]}
    )
    assert mine.json()["deleted"] == 1 + 5, "the definition and its instances from source a"
    assert client.get("/api/workflows/instances/local").status_code == 200


def test_bad_batch_is_400_and_writes_nothing(client: httpx.Client) -> None:
    broken = {**BATCH, "instances": [*BATCH["instances"], {"id": "x", "definitionId": 7}]}
    response = client.post("/api/sync/batch", json=broken)
    assert response.status_code == 400
    assert "definitionId" in response.json()["error"]
    nameless = {**BATCH, "definitions": [*BATCH["definitions"], {"id": "new-without-name"}]}
    response = client.post("/api/sync/batch", json=nameless)
    assert response.status_code == 400
    assert "no name" in response.json()["error"]
    too_big = {"sourceId": "s", "deletedInstanceIds": [f"i{n}" for n in range(10_001)]}
    assert client.post("/api/sync/batch", json=too_big).status_code == 400
    assert client.get("/api/workflows/instances").json()["total"] == 0
    assert client.get("/api/sync/status").json() == {"sources": []}


def test_instance_positions_page_by_id(client: httpx.Client) -> None:
    client.post("/api/sync/batch", json=BATCH)
    first = client.get("/api/sync/sources/elsa-a/instances", params={"limit": 3}).json()["items"]
    assert [item["id"] for item in first] == ["i0", "i1", "i2"]
    assert first[0]["updatedAt"] == 2000
    rest = client.get(
        "/api/sync/sources/elsa-a/instances", params={"after": "i2", "limit": 3}
    ).json()["items"]
    assert [item["id"] for item in rest] == ["i3", "i4"]
    assert client.get("/api/sync/sources/nope/instances").json() == {"items": []}


def test_trigger_without_sources_is_409(client: httpx.Client) -> None:
    response = client.post("/api/sync/trigger")
    assert response.status_code == 409
    assert "TAMMA_SYNC_ELSA_URL" in response.json()["error"]
