"""Extensions beyond the original contract: filters, keyset paging, health, docs."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tamma_sync.models import Scope
from tamma_sync.store import Store

INSTANCES = [
    {
        "id": "a",
        "definitionId": "wf",
        "status": "pending",
        "correlationId": "order-1",
        "updatedAt": 100,
    },
    {
        "id": "b",
        "definitionId": "wf",
        "status": "Running",
        "subStatus": "suspended",
        "updatedAt": 200,
    },
    {
        "id": "c",
        "definitionId": "wf",
        "status": "Finished",
        "subStatus": "Faulted",
        "updatedAt": 300,
    },
    {"id": "d", "definitionId": "other", "status": "completed", "updatedAt": 400},
    {"id": "e", "definitionId": "other", "status": "Unknown", "updatedAt": 500},
]


@pytest.fixture
def seeded(client: httpx.Client) -> httpx.Client:
    for n, body in enumerate(INSTANCES):
        assert (
            client.post("/api/workflows/instances", json={**body, "createdAt": 10 + n}).status_code
            == 201
        )
    return client


def ids(client: httpx.Client, **params: object) -> list[str]:
    response = client.get("/api/workflows/instances", params=params)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


def test_filters_use_typed_sub_status(seeded: httpx.Client) -> None:
    assert ids(seeded, status="Finished") == ["c", "d"]
    assert ids(seeded, status="running") == ["a", "b"]
    assert ids(seeded, subStatus="Suspended,faulted") == ["b", "c"]
    assert ids(seeded, status="Running", subStatus="Faulted") == []
    assert ids(seeded, correlationId="order-1") == ["a"]
    assert ids(seeded, updatedSince=300) == ["c", "d", "e"]
    assert ids(seeded, definitionId="other", status="Finished") == ["d"]


def test_order_by_updated_at_defaults_to_newest_first(seeded: httpx.Client) -> None:
    assert ids(seeded, orderBy="updatedAt") == ["e", "d", "c", "b", "a"]
    assert ids(seeded, orderBy="updatedAt", orderDirection="asc") == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "Sleeping"},
        {"subStatus": "Nope"},
        {"orderBy": "name"},
        {"orderDirection": "sideways"},
        {"updatedSince": -5},
        {"updatedSince": "yesterday"},
        {"cursor": "garbage!"},
    ],
)
def test_bad_query_parameters_are_400(seeded: httpx.Client, params: dict[str, object]) -> None:
    response = seeded.get("/api/workflows/instances", params=params)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert response.json()["error"]


def test_cursor_from_another_order_is_rejected(seeded: httpx.Client) -> None:
    cursor = seeded.get("/api/workflows/instances", params={"pageSize": 2}).json()["nextCursor"]
    response = seeded.get(
        "/api/workflows/instances", params={"cursor": cursor, "orderBy": "updatedAt"}
    )
    assert response.status_code == 400
    assert "orderBy" in response.json()["error"]


def test_cursor_paging_never_skips_rows_that_move_during_the_walk(seeded: httpx.Client) -> None:
    params: dict[str, str | int] = {"pageSize": 2, "orderBy": "updatedAt", "orderDirection": "asc"}
    first = seeded.get("/api/workflows/instances", params=params).json()
    seen = [i["id"] for i in first["data"]]
    # "a" moves to the end of the updatedAt order. Offset paging would now skip "c";
    # keyset paging continues after "b" and meets "a" again, with its new state, at the end.
    seeded.put("/api/workflows/instances/a", json={"status": "done", "updatedAt": 900})
    offset_page = seeded.get("/api/workflows/instances", params={**params, "page": 2}).json()
    assert [i["id"] for i in offset_page["data"]] == ["d", "e"]
    cursor = first["nextCursor"]
    while cursor:
        page = seeded.get("/api/workflows/instances", params={**params, "cursor": cursor}).json()
        seen += [i["id"] for i in page["data"]]
        cursor = page.get("nextCursor")
    assert seen == ["a", "b", "c", "d", "e", "a"]


def test_include_total_false_skips_the_count(seeded: httpx.Client) -> None:
    body = seeded.get("/api/workflows/instances", params={"includeTotal": "false"}).json()
    assert "total" not in body
    assert len(body["data"]) == 5


def test_single_instance_get(seeded: httpx.Client) -> None:
    body = seeded.get("/api/workflows/instances/b").json()
    assert (body["status"], body["subStatus"]) == ("Running", "Suspended")
    missing = seeded.get("/api/workflows/instances/zzz")
    assert (missing.status_code, missing.json()) == (404, {"error": "Instance not found"})


def test_health_readiness_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["schemaRevision"] == ready.json()["expectedSchemaRevision"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/workflows/instances/{instance_id}/cancel" in paths


def test_readyz_reports_a_schema_behind_head(client: httpx.Client, database_url: str) -> None:
    async def stamp_old_revision() -> None:
        store = Store.from_url(database_url)
        try:
            async with store.sql_engine.begin() as conn:
                from sqlalchemy import text

                await conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
        finally:
            await store.close()

    asyncio.run(stamp_old_revision())
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["schemaRevision"] == "old"


def test_an_open_server_tells_a_caller_it_may_do_everything(client: httpx.Client) -> None:
    access = client.get("/api/access")
    assert access.status_code == 200
    assert access.json() == {"tenantId": "default", "scopes": sorted(s.value for s in Scope)}
