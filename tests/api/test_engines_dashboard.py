"""Engines reporting over HTTP, and the dashboard endpoints (compatible + extensions)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from tamma_sync.api import create_app
from tamma_sync.models import DEFAULT_TENANT_ID, DefinitionWrite, InstanceWrite, now_ms
from tamma_sync.settings import Settings
from tamma_sync.store import PurgeCutoffs, Store
from tests.support.server import serve_in_thread

TAMMA_ENGINE = {
    "name": "tamma engine (meywd/tamma)",
    "kind": "tamma",
    "version": "0.6.0",
    "state": "IMPLEMENTING",
    "stats": {"issuesProcessed": 3, "totalCostUsd": 1.27, "startedAt": 1770880000000},
    "heartbeatIntervalSeconds": 10,
}


NOW_MS = now_ms()


def _event(n: int, **fields: object) -> dict[str, object]:
    return {
        "id": f"evt-{n}",
        "type": "STATE_TRANSITION",
        "timestamp": NOW_MS - 100_000 + n,
        "issueNumber": 42,
        "data": {"from": "PLANNING", "to": "IMPLEMENTING"},
        **fields,
    }


class ManualClock:
    """The store's now, moved on by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1000)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_client(settings: Settings, clock: ManualClock) -> Iterator[httpx.Client]:
    """A client of the app served with `clock` as its store's now."""
    with (
        serve_in_thread(create_app(settings, clock=clock)) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        yield http


def test_register_heartbeat_and_liveness(clocked_client: httpx.Client, clock: ManualClock) -> None:
    client = clocked_client
    first = client.put("/api/engines/default", json=TAMMA_ENGINE)
    assert first.status_code == 201
    engine = first.json()
    assert (engine["id"], engine["state"], engine["online"]) == ("default", "IMPLEMENTING", True)
    assert engine["stats"]["issuesProcessed"] == 3

    clock.advance(1)
    beat = client.put("/api/engines/default", json={"state": "MONITORING"})
    assert beat.status_code == 200
    assert beat.json()["name"] == TAMMA_ENGINE["name"], "fields not sent keep their value"
    assert beat.json()["lastHeartbeatAt"] == engine["lastHeartbeatAt"] + 1_000
    assert beat.json()["registeredAt"] == engine["registeredAt"]

    def online() -> dict[str, bool]:
        return {e["id"]: e["online"] for e in client.get("/api/engines").json()}

    # An engine that promised a heartbeat every 0.1 s is offline after 3 missed ones.
    client.put("/api/engines/flaky", json={"heartbeatIntervalSeconds": 0.1})
    clock.advance(0.25)
    assert online() == {"default": True, "flaky": True}, "two missed heartbeats: still online"
    clock.advance(0.1)
    assert online() == {"default": True, "flaky": False}
    assert client.get("/api/engines/flaky").json()["online"] is False
    assert client.get("/api/dashboard/summary").json()["engines"] == {"online": 1, "offline": 1}

    assert client.put("/api/engines/flaky", json={}).json()["online"] is True
    assert online() == {"default": True, "flaky": True}, "a heartbeat brings it back"


@pytest.mark.parametrize(
    "body",
    [
        {"heartbeatIntervalSeconds": 0},
        {"stats": [1]},
        {"state": 7},
        {"heartbeatIntervalSeconds": "10"},
    ],
)
def test_bad_engine_report_is_400(client: httpx.Client, body: dict[str, object]) -> None:
    assert client.put("/api/engines/e", json=body).status_code == 400
    assert client.get("/api/engines").json() == []


def test_events_are_idempotent_paged_newest_first_and_trimmed(client: httpx.Client) -> None:
    assert client.post("/api/engines/e/events", json=[_event(1)]).status_code == 404
    client.put("/api/engines/e", json=TAMMA_ENGINE)
    added = client.post("/api/engines/e/events", json=[_event(n) for n in range(5)])
    assert added.json() == {"added": 5}
    again = client.post("/api/engines/e/events", json=[_event(4), _event(5, type="PR_CREATED")])
    assert again.json() == {"added": 1}, "a re-sent event id is stored once"
    page = client.get("/api/engines/e/events", params={"pageSize": 2}).json()
    assert page["total"] == 6
    assert [e["id"] for e in page["data"]] == ["evt-5", "evt-4"]
    first = page["data"][0]
    assert first["engineId"] == "e"
    assert first["type"] == "PR_CREATED"
    assert first["issueNumber"] == 42
    assert first["tenantId"] == DEFAULT_TENANT_ID
    generated = client.post("/api/engines/e/events", json=[{"type": "CUSTOM_THING"}]).json()
    assert generated == {"added": 1}
    stale = client.post("/api/engines/e/events", json=[_event(9, timestamp=1_000)]).json()
    assert stale == {"added": 0}, "older than the retention age: not kept"
    bad = client.post("/api/engines/e/events", json=[{"data": {}}])
    assert bad.status_code == 400 and "type" in bad.json()["error"]


def test_delete_engine_forgets_it_and_its_events(client: httpx.Client) -> None:
    client.put("/api/engines/e", json=TAMMA_ENGINE)
    client.post("/api/engines/e/events", json=[_event(1)])
    assert client.delete("/api/engines/e").json() == {"ok": True}
    assert client.delete("/api/engines/e").status_code == 404
    assert client.get("/api/engines/e/events").status_code == 404
    assert client.get("/api/dashboard/summary").json()["recentEvents"] == []


def test_dashboard_summary_compatible_shape(client: httpx.Client) -> None:
    client.put("/api/engines/a", json=TAMMA_ENGINE)
    client.put("/api/engines/b", json=TAMMA_ENGINE)
    client.post("/api/engines/a/events", json=[_event(n) for n in range(15)])
    client.post("/api/engines/b/events", json=[_event(100 + n) for n in range(15)])
    client.post("/api/workflows/definitions", json={"id": "wf", "name": "Flow"})
    client.post("/api/workflows/definitions", json={"id": "wf2", "name": "Flow 2"})
    for n, status in enumerate(["running", "failed", "completed", "Unknown"]):
        client.post(
            "/api/workflows/instances", json={"id": f"i{n}", "definitionId": "wf", "status": status}
        )
    summary = client.get("/api/dashboard/summary").json()
    assert summary["engineCount"] == 2
    assert summary["workflowDefinitions"] == 2
    recent = summary["recentEvents"]
    assert len(recent) == 20
    assert [e["timestamp"] for e in recent] == sorted(
        (e["timestamp"] for e in recent), reverse=True
    )
    assert {e["engineId"] for e in recent[:15]} == {"b"}
    assert summary["instances"]["total"] == 4
    assert summary["instances"]["byStatus"] == {"Running": 1, "Finished": 2}
    assert summary["instances"]["bySubStatus"]["Faulted"] == 1
    assert summary["instances"]["untyped"] == 1
    assert summary["engines"] == {"online": 2, "offline": 0}


def test_dashboard_engines_and_workflows(client: httpx.Client) -> None:
    client.put("/api/engines/default", json=TAMMA_ENGINE)
    engines = client.get("/api/dashboard/engines").json()
    assert [{k: e[k] for k in ("id", "state", "stats")} for e in engines] == [
        {"id": "default", "state": "IMPLEMENTING", "stats": TAMMA_ENGINE["stats"]}
    ]
    client.post("/api/workflows/definitions", json={"id": "wf", "name": "Flow", "activities": []})
    client.post("/api/workflows/definitions", json={"id": "empty", "name": "Nothing yet"})
    for n in range(3):
        client.post(
            "/api/workflows/instances",
            json={"id": f"i{n}", "definitionId": "wf", "status": "pending"},
        )
    workflows = {w["id"]: w for w in client.get("/api/dashboard/workflows").json()}
    assert workflows["wf"]["instanceCount"] == 3
    assert workflows["wf"]["name"] == "Flow"
    assert workflows["wf"]["counts"]["bySubStatus"]["Pending"] == 3
    assert workflows["empty"]["instanceCount"] == 0
    compact = client.get("/api/dashboard/workflows", params={"compact": "true"}).json()
    assert {w["id"]: w for w in compact}["wf"] == {
        k: v for k, v in workflows["wf"].items() if k != "activities"
    }


def test_dashboard_workflows_show_every_write_at_once_even_from_another_process(
    client: httpx.Client, settings: Settings
) -> None:
    """The list is cached between writes: writes through another store on the same database
    (another replica), a renamed definition and a retention purge all show on the next
    request."""
    client.post("/api/workflows/definitions", json={"id": "wf", "name": "Flow"})
    client.post("/api/workflows/instances", json={"id": "running", "definitionId": "wf"})

    def listed() -> tuple[str, int]:
        [workflow] = client.get("/api/dashboard/workflows").json()
        return workflow["name"], workflow["instanceCount"]

    def elsewhere(change: Callable[[Store], Awaitable[Any]]) -> None:
        async def run() -> None:
            store = Store.from_url(settings.resolved_database_url)
            try:
                await change(store)
            finally:
                await store.close()

        asyncio.run(run())

    assert listed() == listed() == ("Flow", 1)
    ended = InstanceWrite(id="done", definition_id="wf", status="finished", finished_at=1_000)
    elsewhere(lambda store: store.put_instances(DEFAULT_TENANT_ID, [ended]))
    assert listed() == ("Flow", 2)
    renamed = DefinitionWrite(id="wf", name="Renamed")
    elsewhere(lambda store: store.upsert_definitions(DEFAULT_TENANT_ID, [renamed]))
    assert listed() == ("Renamed", 2)
    cutoffs = PurgeCutoffs(tombstones=0, changes=0, engine_events=0, ended_instances=2_000)
    elsewhere(lambda store: store.purge(cutoffs))
    assert listed() == ("Renamed", 1)


def test_dashboard_workflows_revalidated_by_etag_get_304_until_a_write(
    client: httpx.Client,
) -> None:
    """A poller sending back the list's ETag gets an empty 304 while nothing changed, and
    the new list as soon as a write moves a count."""
    activities = [{"id": "start", "type": "Elsa.Start"}]
    created = {"id": "wf", "name": "Flow", "activities": activities}
    assert client.post("/api/workflows/definitions", json=created).status_code == 201
    client.post("/api/workflows/instances", json={"id": "i1", "definitionId": "wf"})
    first = client.get("/api/dashboard/workflows")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    compact = client.get("/api/dashboard/workflows", params={"compact": "true"})
    assert compact.headers["etag"] != etag, "the compact list is another body"

    for sent in (etag, f'"elsewhere", {etag}', "*"):
        unchanged = client.get("/api/dashboard/workflows", headers={"If-None-Match": sent})
        assert (unchanged.status_code, unchanged.content) == (304, b""), sent
        assert unchanged.headers["etag"] == etag
    other = client.get("/api/dashboard/workflows", headers={"If-None-Match": '"elsewhere"'})
    assert (other.status_code, other.json()) == (200, first.json())

    client.post("/api/workflows/instances", json={"id": "i2", "definitionId": "wf"})
    moved = client.get("/api/dashboard/workflows", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["etag"] != etag
    assert [w["instanceCount"] for w in moved.json()] == [2]


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0, *", False),
        ("identity", False),
        ("br", False),
    ],
)
def test_dashboard_workflows_gzipped_for_callers_that_accept_it(
    client: httpx.Client, accept_encoding: str, gzipped: bool
) -> None:
    """The list (megabytes with 1,000 definitions) is gzipped for callers that accept it,
    and only for them: a .NET `HttpClient` without decompression asks for nothing."""
    activities = [{"id": f"activity-{n}", "type": "Elsa.WriteLine"} for n in range(200)]
    created = {"id": "wf", "name": "Flow", "activities": activities}
    assert client.post("/api/workflows/definitions", json=created).status_code == 201
    plain = client.get("/api/dashboard/workflows", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers

    response = client.get("/api/dashboard/workflows", headers={"Accept-Encoding": accept_encoding})
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == ("gzip" if gzipped else None)
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["etag"] == plain.headers["etag"], "the same content, weakly"
    assert response.json() == plain.json()
    sent = response.num_bytes_downloaded
    assert sent < len(plain.content) / 5 if gzipped else sent == len(plain.content)


def test_synced_source_shows_as_engine_and_in_summary(client: httpx.Client) -> None:
    batch = {
        "sourceId": "elsa",
        "state": {
            "sourceId": "elsa",
            "phase": "error",
            "lastError": "ELSA answered 503",
            "url": "http://elsa:5000",
        },
    }
    assert client.post("/api/sync/batch", json=batch).status_code == 200
    engine = client.get("/api/engines/elsa").json()
    assert (engine["kind"], engine["state"], engine["name"]) == (
        "elsa",
        "error",
        "http://elsa:5000",
    )
    assert engine["stats"]["lastError"] == "ELSA answered 503"
    sync = client.get("/api/dashboard/summary").json()["sync"]
    assert sync == [{"sourceId": "elsa", "phase": "error", "lastError": "ELSA answered 503"}]
