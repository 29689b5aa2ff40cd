"""The original API's busiest requests, answered by the front door's fast routes
(api/front_door.py, api/fast_routes.py), are answered exactly as the FastAPI routes answer
them, over real HTTP on SQLite and PostgreSQL, with and without API keys: the .NET
service's writes, the instance list and the dashboard summary."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Message, Receive, Scope, Send

from tamma_sync.api import create_app
from tamma_sync.api.app import Api
from tamma_sync.api.fast_routes import FastRoute
from tamma_sync.models import Scope as KeyScope
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tests.support.http import TLS
from tests.support.server import serve_in_thread

#: Requests of every kind the two write routes may get, each `(method, instance id or None for
#: a POST, headers, body)`; `{id}` in a body is the instance's id on the server asked.
JSON = {"content-type": "application/json"}
CASES: list[tuple[str, str | None, dict[str, str], bytes]] = [
    ("PUT", "i1", JSON, b'{"status": "Running"}'),  # no such instance: 404
    ("POST", None, JSON, b'{"id": "{id}", "definitionId": "wf", "status": "Running"}'),
    ("PUT", "i1", JSON, b'{"status": "Running"}'),  # changes nothing
    ("PUT", "i1", JSON, b'{"status": "Finished", "updatedAt": 1770890430000}'),
    ("PUT", "i1", {"content-type": "application/json; charset=utf-8"}, b'{"subStatus": "Faulted"}'),
    ("PUT", "i1", {"content-type": "APPLICATION/JSON"}, b'{"status": "Running"}'),
    ("PUT", "i1", {"content-type": "application/vnd.api+json"}, b'{"status": "Suspended"}'),
    ("PUT", "i1", {"content-type": "text/plain"}, b'{"status": "Suspended"}'),
    ("PUT", "i1", {}, b'{"status": "Suspended"}'),
    ("PUT", "i1", JSON, b""),
    ("PUT", "i1", JSON, b'{"status": '),
    ("PUT", "i1", JSON, b'\xef\xbb\xbf{"status": "Cancelled"}'),
    ("PUT", "i1", JSON, b'{"status": 5}'),
    ("PUT", "i1", JSON, b"[]"),
    ("PUT", "i1", JSON, b"null"),
    ("PUT", "i1", JSON, b'{"variables": ' + b"[" * 200 + b"]" * 200 + b"}"),
    ("PUT", "i1", JSON, b'{"currentActivity": "a\\u0000b"}'),
    ("PUT", "i1", JSON, b'{"definitionId": "other", "id": "other", "status": "Running"}'),
    ("POST", None, JSON, b'{"id": "", "definitionId": "wf"}'),
    ("POST", None, JSON, b'{"id": "{id}-2"}'),
    ("POST", None, JSON, b'{"id": "{id}", "definitionId": "wf", "status": "Pending"}'),
    ("POST", None, {"content-type": "application/x-www-form-urlencoded"}, b"definitionId=wf"),
    ("PATCH", "i1", JSON, b'{"status": "Running"}'),
]
LIST = "/api/workflows/instances"
SUMMARY = "/api/dashboard/summary"
#: Reads, after the writes above, that the fast routes answer, each `(method, path)`.
FAST_READS = [
    ("GET", LIST),
    ("GET", LIST + "?page=1&pageSize=50"),
    ("GET", LIST + "?page=2abc&pageSize=0x2"),
    ("GET", LIST + "?page=-5&pageSize=abc"),
    ("GET", LIST + "?page=99999999999999999999"),
    ("GET", LIST + "?orderBy=updatedAt&orderDirection=asc"),
    ("GET", LIST + "?createdSince=0&createdBefore=9999999999999"),
    ("GET", LIST + "?updatedBefore=abc&updatedBefore=1"),  # the last of repeated ones counts
    ("GET", LIST + "?includeTotal=false"),
    ("GET", LIST + "?definitionId=wf&status=Running,Finished"),
    ("GET", LIST + "?subStatus=Bogus"),  # refused by the endpoint itself
    ("GET", LIST + "?cursor=garbage"),
    ("GET", LIST + "?idPrefix=i1&unknown=1"),
    ("GET", LIST + "?currentActivity=&statusText=Running"),
    ("GET", SUMMARY),
    ("GET", SUMMARY + "?unknown=1"),
]
#: Reads they leave to FastAPI: queries that fail validation (declined), and HEADs.
FASTAPI_READS = [
    ("GET", LIST + "?orderBy=bogus"),
    ("GET", LIST + "?orderDirection=sideways"),
    ("GET", LIST + "?createdSince=-1"),
    ("GET", LIST + "?updatedSince=abc"),
    ("GET", LIST + "?updatedBefore=1&updatedBefore=abc"),
    ("GET", LIST + "?includeTotal=maybe"),
    ("GET", LIST + "?sourceId=" + "s" * 101),
    ("HEAD", LIST),
    ("HEAD", SUMMARY),
]
#: An engine and its events, so that the summary has something in every field.
ENGINE = {
    "name": "tamma engine ✓",
    "kind": "tamma",
    "state": "IMPLEMENTING",
    "stats": {"issuesProcessed": 3, "totalCostUsd": 1.27, "none": None},
    "heartbeatIntervalSeconds": 60,
}
EVENTS = [
    {"type": "STATE_TRANSITION", "issueNumber": 42, "data": {"from": "PLANNING", "cost": 0.1}},
    {"type": "ERROR", "data": {"message": "é\u0000", "nested": [1.5e300, None, {"a": None}]}},
]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Epoch ms of 13 digits: the server's now, where a write leaves a time to it (the bodies
#: above give only earlier times).
EPOCH_MS = re.compile(r"\b1[0-9]{12}\b")


def _server_time(found: re.Match[str]) -> str:
    return "<now>" if int(found[0]) > 1_780_000_000_000 else found[0]


class RouteRecorder:
    """The app, noting which route answered each request (the front door or the router
    leaves it in the request's scope) as its response starts, before the client can read
    it. Noted once the app returned, a route could come after the client's next step on a
    loaded host."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.routes: list[object] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.routes.append(scope.get("route"))
            await send(message)

        await self.app(scope, receive, noting_send)


def without_fast_routes(app: Api) -> Api:
    app.fast_routes = []
    return app


def answers(client: httpx.Client, suffix: str, auth: dict[str, str]) -> list[Any]:
    """What the server answers to `CASES`, its instance ids `i1…` made `i1<suffix>…`,
    with those ids and generated UUIDs made the same again for the comparison."""
    found = []
    for method, instance_id, headers, body in CASES:
        path = "/api/workflows/instances"
        if instance_id is not None:
            path += f"/{instance_id}{suffix}"
        content = body.replace(b"{id}", f"i1{suffix}".encode())
        response = client.request(method, path, content=content, headers={**headers, **auth})
        text = UUID.sub("<uuid>", response.text.replace(f"i1{suffix}", "i1"))
        text = EPOCH_MS.sub(_server_time, text)
        found.append(
            (
                method,
                body[:40],
                response.status_code,
                response.headers.get("content-type"),
                response.headers.get("allow"),
                text,
            )
        )
    return found


def request_counts(client: httpx.Client) -> list[str]:
    """The server's `/metrics` lines counting HTTP requests."""
    lines = client.get("/metrics").text.splitlines()
    return sorted(line for line in lines if line.startswith("tamma_sync_http_requests_total{"))


def read_answers(client: httpx.Client, auth: dict[str, str]) -> list[Any]:
    """What the server answers to `FAST_READS`, then to `FASTAPI_READS`."""
    found = []
    for method, path in [*FAST_READS, *FASTAPI_READS]:
        response = client.request(method, path, headers=auth)
        found.append(
            (
                method,
                path,
                response.status_code,
                response.headers.get("content-type"),
                response.headers.get("allow"),
                UUID.sub("<uuid>", response.text),
            )
        )
    return found


@pytest.fixture
def servers(settings: Settings) -> Iterator[tuple[httpx.Client, httpx.Client, RouteRecorder]]:
    """The app, and the same app without its `FastRoute`s, on one database."""
    fast = RouteRecorder(create_app(settings))
    with (
        serve_in_thread(fast) as fast_url,
        serve_in_thread(without_fast_routes(create_app(settings))) as plain_url,
        httpx.Client(base_url=fast_url, timeout=10, verify=TLS) as fast_client,
        httpx.Client(base_url=plain_url, timeout=10, verify=TLS) as plain_client,
    ):
        yield fast_client, plain_client, fast


def test_the_writes_and_reads_answer_as_the_fastapi_routes_do(
    servers: tuple[httpx.Client, httpx.Client, RouteRecorder],
) -> None:
    fast, plain, recorder = servers
    assert answers(fast, "-fast", {}) == answers(plain, "-plain", {})
    # Counted in the metrics as FastAPI's routes count them: by template, method and status.
    assert request_counts(fast) == request_counts(plain)
    assert 'method="PUT",route="/api/workflows/instances/{instance_id}",status="404"' in str(
        request_counts(fast)
    )
    # The .NET service's own requests were answered by the fast routes, the rest by FastAPI.
    served_fast = [isinstance(route, FastRoute) for route in recorder.routes]
    assert served_fast[:5] == [True] * 5
    assert served_fast[CASES.index(("PUT", "i1", JSON, b'{"status": 5}'))] is False
    assert all(isinstance(r, FastRoute | APIRoute) for r in recorder.routes), recorder.routes
    assert fast.put("/api/engines/e1", json=ENGINE).status_code == 201
    assert fast.post("/api/engines/e1/events", json=EVENTS).status_code == 200
    recorder.routes.clear()
    read = read_answers(fast, {})
    assert read == read_answers(plain, {})
    assert {status for _, _, status, *_ in read} == {200, 400, 405}
    assert '"total":' in read[0][-1] and "i1-fast" in read[0][-1]
    assert "1.5e+300" in read[FAST_READS.index(("GET", SUMMARY))][-1]
    # The fast routes answered the reads meant for them, FastAPI's the others.
    fast_answered = [isinstance(route, FastRoute) for route in recorder.routes]
    assert fast_answered == [True] * len(FAST_READS) + [False] * len(FASTAPI_READS)
    assert all(isinstance(r, FastRoute | APIRoute) for r in recorder.routes), recorder.routes


async def _keys(database_url: str) -> tuple[str, str]:
    store = Store.from_url(database_url)
    try:
        _, manage = await store.create_api_key("tenant-a", list(KeyScope), "all")
        _, view = await store.create_api_key("tenant-a", [KeyScope.WORKFLOWS_VIEW], "view")
    finally:
        await store.close()
    return manage, view


@pytest.mark.parametrize("key", ["manage", "view", "unknown", None])
def test_with_api_keys_the_writes_and_reads_answer_as_the_fastapi_routes_do(
    database_url: str, settings: Settings, key: str | None
) -> None:
    manage, view = asyncio.run(_keys(database_url))
    tokens = {"manage": manage, "view": view, "unknown": "tsk_not-a-key"}
    auth = {"authorization": f"Bearer {tokens[key]}"} if key is not None else {}
    with (
        serve_in_thread(create_app(settings)) as fast_url,
        serve_in_thread(without_fast_routes(create_app(settings))) as plain_url,
        httpx.Client(base_url=fast_url, timeout=10, verify=TLS) as fast,
        httpx.Client(base_url=plain_url, timeout=10, verify=TLS) as plain,
    ):
        fast_answers = answers(fast, "-fast", auth)
        assert fast_answers == answers(plain, "-plain", auth)
        read = read_answers(fast, auth)
        assert read == read_answers(plain, auth)
    statuses = {status for _, _, status, *_ in fast_answers}
    if key == "manage":
        assert {200, 201, 400, 404} <= statuses
    else:
        assert statuses <= {400, 401, 403, 405}, "nothing written without the scope"
    summary_status = read[FAST_READS.index(("GET", SUMMARY))][2]
    read_statuses = {status for _, _, status, *_ in read}
    if key in ("manage", "view"):
        assert read_statuses == {200, 400, 405} | ({403} if key == "view" else set())
        assert summary_status == (200 if key == "manage" else 403)
    else:
        assert read_statuses == {401, 405}
