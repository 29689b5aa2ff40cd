"""The Tamma-compatible workflow API over real HTTP, on SQLite and PostgreSQL.

Mirrors the original API's route tests and what the .NET sync
service sends (§4.4), plus the defects fixed on the way.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tamma_sync.api.routes.workflows import parse_int_like_js
from tamma_sync.api.schemas import MAX_PAGE
from tamma_sync.models import DEFAULT_TENANT_ID as TENANT
from tamma_sync.models import Change, EntityKind
from tamma_sync.settings import Settings
from tamma_sync.store import Store

DOTNET_DEFINITION = {
    "id": "tamma-autonomous-mentorship",
    "name": "Tamma Autonomous Mentorship",
    "version": 3,
    "description": "Complete autonomous mentorship workflow for junior developers",
    "activities": [],
    "syncedAt": 1770890400000,
}
DOTNET_INSTANCE = {
    "id": "3f6b0c2e8a1d4f7b",
    "definitionId": "tamma-autonomous-mentorship",
    "status": "Running",
    "variables": {},
    "createdAt": 1770890400000,
    "updatedAt": 1770890430000,
}


def test_post_definition_201_then_200_with_server_synced_at(client: httpx.Client) -> None:
    before = int(time.time() * 1000)
    first = client.post("/api/workflows/definitions", json=DOTNET_DEFINITION)
    assert first.status_code == 201
    body = first.json()
    assert before <= body["syncedAt"] <= int(time.time() * 1000), "syncedAt is the server's"
    assert {k: body[k] for k in ("id", "name", "version", "description", "activities")} == {
        k: DOTNET_DEFINITION[k] for k in ("id", "name", "version", "description", "activities")
    }
    again = client.post("/api/workflows/definitions", json={**DOTNET_DEFINITION, "name": "New"})
    assert again.status_code == 200
    assert again.json()["name"] == "New"
    assert client.get("/api/workflows/definitions").json()[0]["name"] == "New"


def test_repeated_post_refreshes_synced_at_without_a_change(
    client: httpx.Client, settings: Settings
) -> None:
    """The original set syncedAt on every POST: it says when the definition was last
    received. An identical POST moves only it — no change event, the same revision — and
    every list shows it, the dashboard's cached one too."""
    first = client.post("/api/workflows/definitions", json=DOTNET_DEFINITION).json()
    assert client.get("/api/dashboard/workflows").json()[0]["syncedAt"] == first["syncedAt"]
    time.sleep(0.005)
    again = client.post("/api/workflows/definitions", json=DOTNET_DEFINITION)
    assert again.status_code == 200
    assert again.json()["syncedAt"] > first["syncedAt"]
    assert again.json() == {**first, "syncedAt": again.json()["syncedAt"]}
    path = f"/api/workflows/definitions/{DOTNET_DEFINITION['id']}"
    listed = [
        client.get(path).json(),
        *client.get("/api/workflows/definitions").json(),
        *client.get("/api/dashboard/workflows").json(),
        *client.get("/api/dashboard/workflows", params={"compact": "true"}).json(),
    ]
    assert [d["syncedAt"] for d in listed] == [again.json()["syncedAt"]] * 4

    async def definition_changes() -> list[Change]:
        store = Store.from_url(settings.resolved_database_url)
        try:
            return await store.changes_after(0, entity=EntityKind.DEFINITION)
        finally:
            await store.close()

    [created] = asyncio.run(definition_changes())
    assert (created.op.value, created.revision) == ("create", first["revision"])


def test_definition_with_only_id_and_name(client: httpx.Client) -> None:
    response = client.post("/api/workflows/definitions", json={"id": "d", "name": "D"})
    assert response.status_code == 201
    assert {"id", "name", "syncedAt"} <= response.json().keys()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"id": "", "name": "x"}, "id"), ({"id": "x"}, "name"), ({"id": 5, "name": "x"}, "id")],
)
def test_invalid_definition_is_400_with_error_message(
    client: httpx.Client, body: dict[str, object], field: str
) -> None:
    response = client.post("/api/workflows/definitions", json=body)
    assert response.status_code == 400
    assert field in response.json()["error"]
    assert client.get("/api/workflows/definitions").json() == []


def test_definitions_list_is_a_bare_array(client: httpx.Client) -> None:
    assert client.get("/api/workflows/definitions").json() == []
    client.post("/api/workflows/definitions", json={"id": "b", "name": "B"})
    client.post("/api/workflows/definitions", json={"id": "a", "name": "A"})
    listed = client.get("/api/workflows/definitions").json()
    assert [d["id"] for d in listed] == ["a", "b"]
    assert client.get("/api/workflows/definitions/a").json()["name"] == "A"
    missing = client.get("/api/workflows/definitions/zzz")
    assert (missing.status_code, missing.json()) == (404, {"error": "Definition not found"})


def test_post_instance_201_generates_uuid_for_empty_id(client: httpx.Client) -> None:
    body = {"definitionId": "wf", "status": "pending", "variables": {"issueNumber": 42}}
    response = client.post("/api/workflows/instances", json={**body, "id": ""})
    assert response.status_code == 201
    created = response.json()
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", created["id"]
    )
    assert created["status"] == "pending"
    assert created["variables"] == {"issueNumber": 42}
    assert created["tenantId"] == TENANT
    assert client.post("/api/workflows/instances", json=body).status_code == 201


def test_post_instance_without_definition_id_is_400(client: httpx.Client) -> None:
    response = client.post("/api/workflows/instances", json={"status": "pending"})
    assert response.status_code == 400
    assert "definitionId" in response.json()["error"]


def test_dotnet_upsert_put_404_then_post_then_put(client: httpx.Client) -> None:
    path = f"/api/workflows/instances/{DOTNET_INSTANCE['id']}"
    missing = client.put(path, json=DOTNET_INSTANCE)
    assert (missing.status_code, missing.content) == (404, b'{"error":"Instance not found"}')
    assert missing.headers["content-type"] == "application/json"
    assert "server" not in missing.headers, "the original names no server"

    created = client.post("/api/workflows/instances", json=DOTNET_INSTANCE)
    assert created.status_code == 201
    stored = created.json()
    assert stored["createdAt"] == DOTNET_INSTANCE["createdAt"], "writer timestamps kept"
    assert stored["updatedAt"] == DOTNET_INSTANCE["updatedAt"]
    assert stored["subStatus"] == "Executing"

    # Every later cycle PUTs the same content with a new updatedAt: nothing changes.
    again = client.put(path, json={**DOTNET_INSTANCE, "updatedAt": 1770890460000})
    assert again.status_code == 200
    assert again.json() == stored

    finished = client.put(
        path, json={**DOTNET_INSTANCE, "status": "Finished", "updatedAt": 1770890490000}
    )
    assert finished.json()["status"] == "Finished"
    assert finished.json()["updatedAt"] == 1770890490000
    assert finished.json()["revision"] == stored["revision"] + 1


def test_put_keeps_id_definition_and_tenant(client: httpx.Client) -> None:
    client.post(
        "/api/workflows/instances", json={"id": "i1", "definitionId": "wf", "status": "pending"}
    )
    response = client.put(
        "/api/workflows/instances/i1",
        json={
            "id": "hacked-id",
            "definitionId": "hacked",
            "tenantId": "other",
            "status": "running",
            "currentActivity": "assess-capability",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["definitionId"], body["tenantId"]) == ("i1", "wf", TENANT)
    assert (body["status"], body["currentActivity"]) == ("running", "assess-capability")
    assert client.get("/api/workflows/instances/hacked-id").status_code == 404


def test_status_round_trips_verbatim(client: httpx.Client) -> None:
    for n, status in enumerate(["pending", "running", "Running", "Unknown", "cancelled", "Über"]):
        client.post(
            "/api/workflows/instances", json={"id": f"i{n}", "definitionId": "wf", "status": status}
        )
        assert client.get(f"/api/workflows/instances/i{n}").json()["status"] == status


@pytest.mark.parametrize(
    "body",
    [
        {"status": 5},
        {"variables": [1, 2]},
        {"variables": "x"},
        {"currentActivity": {"a": 1}},
        {"subStatus": "Sleeping"},
        {"updatedAt": -1},
        {"updatedAt": "yesterday"},
    ],
)
def test_bad_put_is_400_and_writes_nothing(client: httpx.Client, body: dict[str, object]) -> None:
    client.post(
        "/api/workflows/instances", json={"id": "i1", "definitionId": "wf", "status": "pending"}
    )
    before = client.get("/api/workflows/instances/i1").json()
    response = client.put("/api/workflows/instances/i1", json=body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert client.get("/api/workflows/instances/i1").json() == before


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"definitionId": "wf",', "application/json"),
        (b"not json", "application/json"),
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b"definitionId=wf", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_bodies_are_400_never_500(
    client: httpx.Client, content: bytes, content_type: str
) -> None:
    response = client.post(
        "/api/workflows/instances", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == 400
    assert "error" in response.json()
    assert client.get("/api/workflows/instances").json()["total"] == 0


def test_list_paging_defaults_and_clamping(client: httpx.Client) -> None:
    empty = client.get("/api/workflows/instances").json()
    assert empty == {"data": [], "total": 0, "page": 1, "pageSize": 50}
    for n in range(5):
        client.post(
            "/api/workflows/instances",
            json={"id": f"i{n}", "definitionId": "wf", "createdAt": 1000 + n},
        )
    page = client.get("/api/workflows/instances", params={"page": 1, "pageSize": 2}).json()
    assert (len(page["data"]), page["total"], page["page"], page["pageSize"]) == (2, 5, 1, 2)
    assert page["nextCursor"]
    last = client.get("/api/workflows/instances", params={"page": 3, "pageSize": 2}).json()
    assert [i["id"] for i in last["data"]] == ["i4"]
    assert "nextCursor" not in last
    past_the_end = client.get("/api/workflows/instances", params={"page": 9, "pageSize": 2})
    assert past_the_end.json() == {"data": [], "total": 5, "page": 9, "pageSize": 2}
    for size, expected in [(0, 50), (-3, 1), (1000, 200)]:
        assert (
            client.get("/api/workflows/instances", params={"pageSize": size}).json()["pageSize"]
            == expected
        )
    for page_number, expected in [(0, 1), (-2, 1)]:
        assert (
            client.get("/api/workflows/instances", params={"page": page_number}).json()["page"]
            == expected
        )


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("7", 7),
        ("abc", None),
        ("", None),
        (None, None),
        ("0", 0),
        ("-3", -3),
        ("+4", 4),
        ("12abc", 12),
        (" 7", 7),
        ("\u00a0\ufeff\n7", 7),
        ("1e3", 1),
        ("3.9", 3),
        ("- 5", None),
        ("--5", None),
        ("0x1A", 26),
        ("-0x10", -16),
        ("0x", None),
        ("\u0661", None),
        ("9" * 400, float("inf")),
        ("-" + "9" * 400, float("-inf")),
        (25, 25),
    ],
)
def test_parse_int_like_js(value: str | int | None, parsed: float | None) -> None:
    assert parse_int_like_js(value) == parsed


def test_list_paging_is_as_lenient_as_the_original(client: httpx.Client) -> None:
    """`page` and `pageSize` are read as the original's parseInt read them, never a 400;
    the extensions' parameters stay strict."""
    for n in range(3):
        client.post(
            "/api/workflows/instances",
            json={"id": f"i{n}", "definitionId": "wf", "createdAt": 1000 + n},
        )
    cases: list[tuple[dict[str, str], int, int]] = [
        ({"page": "abc"}, 1, 50),
        ({"page": "0"}, 1, 50),
        ({"page": "-3"}, 1, 50),
        ({"page": ""}, 1, 50),
        ({"pageSize": "xyz"}, 1, 50),
        ({"pageSize": "0"}, 1, 50),
        ({"pageSize": "-5"}, 1, 1),
        ({"pageSize": "500"}, 1, 200),
        ({"page": "12abc", "pageSize": "1"}, 12, 1),
        ({"page": " 2", "pageSize": " 2"}, 2, 2),
        ({"page": "1e3"}, 1, 50),
        ({"page": "3.9", "pageSize": "1.5"}, 3, 1),
        ({"page": "0x2", "pageSize": "0x2"}, 2, 2),
        ({"page": "9" * 400}, MAX_PAGE, 50),
        ({"page": "99999999999", "pageSize": "2"}, MAX_PAGE, 2),
    ]
    for params, page, page_size in cases:
        response = client.get("/api/workflows/instances", params=params)
        assert response.status_code == 200, (params, response.text)
        body = response.json()
        assert (body["page"], body["pageSize"], body["total"]) == (page, page_size, 3), params
        expected = [f"i{n}" for n in range(3)][(page - 1) * page_size : page * page_size]
        assert [i["id"] for i in body["data"]] == expected, params
    for strict in (
        {"includeTotal": "perhaps"},
        {"orderBy": "name"},
        {"orderDirection": "up"},
        {"updatedSince": "yesterday"},
        {"cursor": "not-a-cursor"},
    ):
        response = client.get("/api/workflows/instances", params={"page": "x", **strict})
        assert response.status_code == 400, strict
        assert next(iter(strict)) in response.json()["error"], strict


def test_list_filters_by_definition_and_default_order_is_creation(client: httpx.Client) -> None:
    for n, definition in enumerate(["a", "b", "a", "a"]):
        client.post(
            "/api/workflows/instances",
            json={"id": f"i{n}", "definitionId": definition, "createdAt": 5000 - n},
        )
    listed = client.get("/api/workflows/instances", params={"definitionId": "a"}).json()
    assert [i["id"] for i in listed["data"]] == ["i3", "i2", "i0"]
    assert listed["total"] == 3
    assert client.get("/api/workflows/instances", params={"definitionId": ""}).json()["total"] == 4


def test_cancel_then_already_cancelled(client: httpx.Client) -> None:
    client.post(
        "/api/workflows/instances", json={"id": "i1", "definitionId": "wf", "status": "running"}
    )
    first = client.post("/api/workflows/instances/i1/cancel")
    assert first.status_code == 200
    assert (first.json()["status"], first.json()["subStatus"]) == ("cancelled", "Cancelled")
    assert "message" not in first.json()
    second = client.post("/api/workflows/instances/i1/cancel")
    assert second.json()["message"] == "Instance already cancelled"
    assert second.json()["revision"] == first.json()["revision"]
    missing = client.post("/api/workflows/instances/nope/cancel")
    assert (missing.status_code, missing.json()) == (404, {"error": "Instance not found"})


def test_delete_ok_then_404(client: httpx.Client) -> None:
    client.post("/api/workflows/instances", json={"id": "i1", "definitionId": "wf"})
    assert client.delete("/api/workflows/instances/i1").json() == {"ok": True}
    gone = client.delete("/api/workflows/instances/i1")
    assert (gone.status_code, gone.json()) == (404, {"error": "Instance not found"})
    assert client.get("/api/workflows/instances/i1").status_code == 404
    assert client.get("/api/workflows/instances").json()["total"] == 0


def test_unknown_route_answers_json_error(client: httpx.Client) -> None:
    response = client.get("/api/nothing-here")
    assert (response.status_code, response.json()) == (404, {"error": "Not Found"})


def test_a_posted_definition_drops_connections_as_the_original_did(client: httpx.Client) -> None:
    """The original dropped keys it did not know; `connections` comes from ELSA, by the
    sync, never from a POST."""
    body = {"id": "wf", "name": "Flow", "connections": [{"source": {"activity": "a"}}]}
    assert client.post("/api/workflows/definitions", json=body).status_code == 201
    assert "connections" not in client.get("/api/workflows/definitions/wf").json()


def test_a_synced_flowchart_has_its_connections_in_its_own_read_not_in_lists(
    client: httpx.Client,
) -> None:
    """Connections are for the definition's page; the lists of every definition (the
    original's, the dashboard's in full and compact) stay as large as they were."""
    link = {"source": {"activity": "a", "port": "Done"}, "target": {"activity": "b"}}
    definition = {"id": "wf", "name": "Flow", "activities": [], "connections": [link]}
    synced = client.post("/api/sync/batch", json={"sourceId": "elsa", "definitions": [definition]})
    assert synced.status_code == 200, synced.text
    assert client.get("/api/workflows/definitions/wf").json()["connections"] == [link]
    [listed] = client.get("/api/workflows/definitions").json()
    assert listed["id"] == "wf" and listed["activities"] == [] and "connections" not in listed
    for query in ("", "?compact=true"):
        [shown] = client.get(f"/api/dashboard/workflows{query}").json()
        assert shown["id"] == "wf" and "connections" not in shown
