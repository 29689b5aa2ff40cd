"""The .NET service's writes (api/fast_writes.py) answer exactly as the FastAPI routes do,
over real HTTP on SQLite and PostgreSQL, with and without API keys."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from tamma_sync.api import create_app
from tamma_sync.api.fast_writes import FastWrite
from tamma_sync.models import Scope as KeyScope
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tests.support.http import TLS
from tests.support.server import serve_in_thread

#: Requests of every kind the two routes may get, each `(method, instance id or None for a
#: POST, headers, body)`; `{id}` in a body is the instance's id on the server asked.
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
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Epoch ms of 13 digits: the server's now, where a write leaves a time to it (the bodies
#: above give only earlier times).
EPOCH_MS = re.compile(r"\b1[0-9]{12}\b")


def _server_time(found: re.Match[str]) -> str:
    return "<now>" if int(found[0]) > 1_780_000_000_000 else found[0]


class RouteRecorder:
    """The app, noting which route answered each request (the router leaves it in the
    request's scope)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.routes: list[object] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.routes.append(scope.get("route"))


def without_fast_writes(app: FastAPI) -> FastAPI:
    app.router.routes[:] = [r for r in app.router.routes if not isinstance(r, FastWrite)]
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


@pytest.fixture
def servers(settings: Settings) -> Iterator[tuple[httpx.Client, httpx.Client, RouteRecorder]]:
    """The app, and the same app without its `FastWrite` routes, on one database."""
    fast = RouteRecorder(create_app(settings))
    with (
        serve_in_thread(fast) as fast_url,
        serve_in_thread(without_fast_writes(create_app(settings))) as plain_url,
        httpx.Client(base_url=fast_url, timeout=10, verify=TLS) as fast_client,
        httpx.Client(base_url=plain_url, timeout=10, verify=TLS) as plain_client,
    ):
        yield fast_client, plain_client, fast


def test_the_writes_answer_as_the_fastapi_routes_do(
    servers: tuple[httpx.Client, httpx.Client, RouteRecorder],
) -> None:
    fast, plain, recorder = servers
    assert answers(fast, "-fast", {}) == answers(plain, "-plain", {})
    # The .NET service's own requests were answered by the fast routes, the rest by FastAPI.
    served_fast = [isinstance(route, FastWrite) for route in recorder.routes]
    assert served_fast[:5] == [True] * 5
    assert served_fast[CASES.index(("PUT", "i1", JSON, b'{"status": 5}'))] is False
    assert all(isinstance(r, FastWrite | APIRoute) for r in recorder.routes), recorder.routes


async def _keys(database_url: str) -> tuple[str, str]:
    store = Store.from_url(database_url)
    try:
        _, manage = await store.create_api_key("tenant-a", list(KeyScope), "all")
        _, view = await store.create_api_key("tenant-a", [KeyScope.WORKFLOWS_VIEW], "view")
    finally:
        await store.close()
    return manage, view


@pytest.mark.parametrize("key", ["manage", "view", "unknown", None])
def test_with_api_keys_the_writes_answer_as_the_fastapi_routes_do(
    database_url: str, settings: Settings, key: str | None
) -> None:
    manage, view = asyncio.run(_keys(database_url))
    tokens = {"manage": manage, "view": view, "unknown": "tsk_not-a-key"}
    auth = {"authorization": f"Bearer {tokens[key]}"} if key is not None else {}
    with (
        serve_in_thread(create_app(settings)) as fast_url,
        serve_in_thread(without_fast_writes(create_app(settings))) as plain_url,
        httpx.Client(base_url=fast_url, timeout=10, verify=TLS) as fast,
        httpx.Client(base_url=plain_url, timeout=10, verify=TLS) as plain,
    ):
        fast_answers = answers(fast, "-fast", auth)
        assert fast_answers == answers(plain, "-plain", auth)
    statuses = {status for _, _, status, *_ in fast_answers}
    if key == "manage":
        assert {200, 201, 400, 404} <= statuses
    else:
        assert statuses <= {400, 401, 403, 405}, "nothing written without the scope"
