"""API keys, scopes and tenant isolation over every endpoint."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tamma_sync.api import create_app
from tamma_sync.models import Scope
from tamma_sync.settings import Settings
from tests.security.conftest import TENANT_A, Keys, client_for

VIEW, MANAGE, DELETE = Scope.WORKFLOWS_VIEW, Scope.WORKFLOWS_MANAGE, Scope.WORKFLOWS_DELETE
DASHBOARD, SYNC, REPORT = Scope.DASHBOARD_VIEW, Scope.SYNC_WRITE, Scope.ENGINES_REPORT
NOW_MS = int(time.time() * 1000)

#: (method, path, body, scope): every route that needs a key, with a body it accepts.
ENDPOINTS: list[tuple[str, str, Any, Scope]] = [
    ("GET", "/api/workflows/definitions", None, VIEW),
    ("POST", "/api/workflows/definitions", {"id": "wf", "name": "Flow"}, MANAGE),
    ("GET", "/api/workflows/definitions/wf", None, VIEW),
    ("GET", "/api/workflows/definitions/wf/activities", None, VIEW),
    ("GET", "/api/workflows/instances", None, VIEW),
    ("POST", "/api/workflows/instances", {"id": "a1", "definitionId": "wf"}, MANAGE),
    ("GET", "/api/workflows/instances/a1", None, VIEW),
    ("PUT", "/api/workflows/instances/a1", {"currentActivity": "x"}, MANAGE),
    ("POST", "/api/workflows/instances/a1/cancel", None, MANAGE),
    ("DELETE", "/api/workflows/instances/a1", None, DELETE),
    ("GET", "/api/workflows/instances/a1/events", None, VIEW),
    ("GET", "/api/workflows/instances/a1/history", None, VIEW),
    ("GET", "/api/workflows/instances/a1/journal", None, VIEW),
    ("GET", "/api/workflows/trends", None, VIEW),
    ("GET", "/api/events", None, VIEW),
    ("GET", "/api/dashboard/summary", None, DASHBOARD),
    ("GET", "/api/dashboard/engines", None, DASHBOARD),
    ("GET", "/api/dashboard/workflows", None, DASHBOARD),
    ("GET", "/api/engines", None, DASHBOARD),
    ("GET", "/api/engines/eng-a", None, DASHBOARD),
    ("GET", "/api/engines/eng-a/events", None, DASHBOARD),
    ("PUT", "/api/engines/eng-a", {"state": "IDLE"}, REPORT),
    ("POST", "/api/engines/eng-a/events", [{"type": "PR_CREATED", "timestamp": NOW_MS}], REPORT),
    ("DELETE", "/api/engines/eng-a", None, REPORT),
    ("POST", "/api/sync/batch", {"sourceId": "src-a"}, SYNC),
    ("GET", "/api/sync/status", None, DASHBOARD),
    ("POST", "/api/sync/trigger", None, SYNC),
    ("GET", "/api/sync/sources/src-a/instances", None, SYNC),
]
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
#: Routes any valid key may use, whatever its scopes.
ANY_KEY = {("GET", "/api/access")}
#: The pages are shells without data (the dashboard once keys exist): their scripts call the
#: API with the key.
PAGES = {("GET", "/"), ("GET", "/instances"), ("GET", "/instance")}
STREAMS = {"/api/events", "/api/workflows/instances/a1/events"}


def _status(http: httpx.Client, method: str, path: str, body: Any) -> int:
    """The response status; streams are opened and closed at once."""
    if path in STREAMS:
        with http.stream(method, path) as response:
            return response.status_code
    return http.request(method, path, json=body).status_code


def test_every_route_is_in_the_matrix() -> None:
    """A new route cannot slip through without its scope being tested."""
    documented = {
        (method.upper(), path)
        for path, operations in create_app(Settings()).openapi()["paths"].items()
        for method in operations
    }
    tested = {(m, _template(p)) for m, p, _, _ in ENDPOINTS} | PUBLIC | ANY_KEY
    assert documented == tested


def _template(path: str) -> str:
    return (
        path.replace("/definitions/wf", "/definitions/{definition_id}")
        .replace("/instances/a1", "/instances/{instance_id}")
        .replace("/engines/eng-a", "/engines/{engine_id}")
        .replace("/sources/src-a", "/sources/{source_id}")
    )


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_scopes(
    keyed_url: str, keys: Keys, method: str, path: str, body: Any, scope: Scope
) -> None:
    for key in (None, "tsk_nope_x", "not-even-a-key", keys.revoked):
        with client_for(keyed_url, key) as http:
            response = http.request(method, path, json=body)
            assert response.status_code == 401, (key, response.text)
            assert response.json() == {"error": "Not authenticated"}
    with client_for(keyed_url, keys.all_but[scope]) as http:
        response = http.request(method, path, json=body)
        assert response.status_code == 403
        assert response.json() == {"error": "Insufficient permissions", "required": scope.value}
    with client_for(keyed_url, keys.only[scope]) as http:
        assert _status(http, method, path, body) not in (401, 403)


def test_a_key_learns_its_tenant_and_scopes_and_nothing_without_one(
    keyed_url: str, keys: Keys
) -> None:
    """What the pages ask to show only the actions a key may take."""
    for key in (None, "tsk_nope_x", keys.revoked):
        with client_for(keyed_url, key) as http:
            assert http.get("/api/access").status_code == 401
    with client_for(keyed_url, keys.only[VIEW]) as http:
        access = http.get("/api/access").json()
    assert (access["tenantId"], access["scopes"]) == (TENANT_A, ["workflows:view"])
    assert access["keyId"]
    with client_for(keyed_url, keys.all_but[SYNC]) as http:
        scopes = http.get("/api/access").json()["scopes"]
    assert SYNC.value not in scopes and len(scopes) == len(Scope) - 1


def test_public_routes_need_no_key(keyed_url: str) -> None:
    with client_for(keyed_url, None) as http:
        for method, path in PUBLIC | PAGES:
            assert http.request(method, path).status_code == 200, path
        assert http.get("/openapi.json").status_code == 200


def _seed_tenant_a(http: httpx.Client) -> None:
    assert (
        http.post("/api/workflows/definitions", json={"id": "wf", "name": "Flow"}).status_code
        == 201
    )
    body = {"id": "a1", "definitionId": "wf", "status": "running", "variables": {"secret": "A"}}
    assert http.post("/api/workflows/instances", json=body).status_code == 201
    assert http.put("/api/engines/eng-a", json={"state": "IDLE"}).status_code == 201
    event = [{"id": "e1", "type": "PR_CREATED", "timestamp": NOW_MS}]
    assert http.post("/api/engines/eng-a/events", json=event).status_code == 200
    batch = {
        "sourceId": "src-a",
        "instances": [{"id": "s1", "definitionId": "wf", "status": "Running"}],
        "state": {"sourceId": "src-a", "phase": "idle"},
    }
    assert http.post("/api/sync/batch", json=batch).status_code == 200


def _view_of_a(http: httpx.Client) -> list[Any]:
    return [
        http.get(path).json()
        for path in (
            "/api/workflows/definitions",
            "/api/workflows/instances",
            "/api/engines/eng-a/events",
            "/api/sync/status",
            "/api/dashboard/workflows",
        )
    ]


def test_tenant_b_can_neither_see_nor_touch_tenant_a(keyed_url: str, keys: Keys) -> None:
    with client_for(keyed_url, keys.a) as a, client_for(keyed_url, keys.b) as b:
        _seed_tenant_a(a)
        before = _view_of_a(a)

        assert b.get("/api/workflows/definitions").json() == []
        assert b.get("/api/workflows/definitions/wf").status_code == 404
        assert b.get("/api/workflows/instances").json()["total"] == 0
        for method, path, body in [
            ("GET", "/api/workflows/definitions/wf/activities", None),
            ("GET", "/api/workflows/instances/a1", None),
            ("PUT", "/api/workflows/instances/a1", {"status": "hacked"}),
            ("POST", "/api/workflows/instances/a1/cancel", None),
            ("DELETE", "/api/workflows/instances/a1", None),
            ("GET", "/api/workflows/instances/a1/events", None),
            ("GET", "/api/workflows/instances/a1/history", None),
            ("GET", "/api/engines/eng-a", None),
            ("GET", "/api/engines/eng-a/events", None),
            ("POST", "/api/engines/eng-a/events", [{"type": "X", "timestamp": NOW_MS}]),
            ("DELETE", "/api/engines/eng-a", None),
        ]:
            response = b.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
        assert b.get("/api/engines").json() == []
        assert b.get("/api/dashboard/engines").json() == []
        assert b.get("/api/dashboard/workflows").json() == []
        a_tag = a.get("/api/dashboard/workflows").headers["etag"]
        tagged = b.get("/api/dashboard/workflows", headers={"If-None-Match": a_tag})
        assert (tagged.status_code, tagged.json()) == (200, []), "A's tag is not B's list"
        summary = b.get("/api/dashboard/summary").json()
        assert (
            summary["engineCount"],
            summary["workflowDefinitions"],
            summary["recentEvents"],
        ) == (
            0,
            0,
            [],
        )
        assert summary["instances"]["total"] == 0 and summary["sync"] == []
        assert b.get("/api/sync/status").json() == {"sources": []}
        assert b.get("/api/sync/sources/src-a/instances").json() == {"items": []}
        assert b.post("/api/sync/trigger").status_code == 409
        deleting = {
            "sourceId": "src-a",
            "deletedInstanceIds": ["s1", "a1"],
            "deletedDefinitionIds": ["wf"],
        }
        assert b.post("/api/sync/batch", json=deleting).json()["deleted"] == 0

        # The same ids in tenant B are B's own rows; A's stay as they were.
        assert (
            b.post("/api/workflows/instances", json={"id": "a1", "definitionId": "wf"}).status_code
            == 201
        )
        assert b.put("/api/engines/eng-a", json={"state": "B"}).status_code == 201
        assert b.get("/api/workflows/instances/a1").json()["variables"] == {}
        with b.stream("GET", "/api/events", headers={"Last-Event-ID": "0"}) as stream:
            seen = _frames_until_quiet(stream)
        assert all('"a1"' in frame and '"secret"' not in frame for frame in seen)
        assert len(seen) == 1, "B's stream replays B's one change, none of A's"

        assert _view_of_a(a) == before
        assert a.get("/api/engines/eng-a").json()["state"] == "IDLE"
        assert a.get("/api/workflows/instances/a1").json()["variables"] == {"secret": "A"}


def _frames_until_quiet(stream: httpx.Response) -> list[str]:
    """Event frames until the first heartbeat (the backfill is over by then)."""
    frames: list[str] = []
    current: list[str] = []
    for line in stream.iter_lines():
        if line == ":heartbeat":
            return frames
        if line.startswith("data:"):
            current.append(line)
        if line == "" and current:
            frames.append("\n".join(current))
            current = []
    return frames


def test_keys_bind_writes_to_their_tenant(keyed_url: str, keys: Keys) -> None:
    with client_for(keyed_url, keys.a) as a:
        created = a.post(
            "/api/workflows/instances", json={"id": "i", "definitionId": "wf", "tenantId": "other"}
        )
    assert created.json()["tenantId"] == TENANT_A
