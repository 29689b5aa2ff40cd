"""Hostile input: oversized bodies, absurd nesting, huge numbers and strings, CORS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tamma_sync.api import create_app
from tamma_sync.settings import Settings
from tests.support.server import serve_in_thread

LIMIT = 64 * 1024


@pytest.fixture
def small_limit_url(sqlite_database_url: str, tmp_path: Path) -> Iterator[str]:
    settings = Settings(database_url=sqlite_database_url, data_dir=tmp_path, max_body_bytes=LIMIT)
    with serve_in_thread(create_app(settings)) as url:
        yield url


def test_oversized_body_is_413(small_limit_url: str) -> None:
    with httpx.Client(base_url=small_limit_url) as http:
        big = {"id": "i", "definitionId": "wf", "variables": {"blob": "x" * (LIMIT + 1)}}
        response = http.post("/api/workflows/instances", json=big)
        assert response.status_code == 413
        assert str(LIMIT) in response.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            yield b'{"id": "i", "definitionId": "wf", "variables": {"blob": "'
            for _ in range(LIMIT // 1024 + 2):
                yield b"x" * 1024
            yield b'"}}'

        streamed = http.post(
            "/api/workflows/instances",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413
        assert http.get("/api/workflows/instances").json()["total"] == 0


@pytest.mark.parametrize("depth", [200, 100_000])
def test_absurdly_nested_json_is_400(client: httpx.Client, depth: int) -> None:
    body = (
        '{"id": "i", "definitionId": "wf", "variables": {"v": ' + "[" * depth + "]" * depth + "}}"
    )
    response = client.post(
        "/api/workflows/instances", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "nested" in response.json()["error"]


def test_reasonable_nesting_is_fine(client: httpx.Client) -> None:
    nested: dict[str, object] = {}
    node = nested
    for _ in range(40):
        node["child"] = {}
        node = node["child"]  # type: ignore[assignment]
    body = {"id": "i", "definitionId": "wf", "variables": nested}
    assert client.post("/api/workflows/instances", json=body).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"id": "i", "definitionId": "wf", "createdAt": 10**30},
        {"id": "i", "definitionId": "wf", "incidentCount": -1},
        {"id": "x" * 256, "definitionId": "wf"},
        {"id": "i", "definitionId": "wf", "status": "s" * 1000},
        {"id": "i", "definitionId": "wf", "createdAt": 1.5},
        {"id": "i", "definitionId": "wf", "createdAt": "1770890400000"},
        {"id": "i", "definitionId": "wf", "variables": None, "subStatus": 3},
    ],
)
def test_out_of_range_values_are_400_and_never_500(
    client: httpx.Client, body: dict[str, object]
) -> None:
    response = client.post("/api/workflows/instances", json=body)
    assert response.status_code == 400, response.text
    assert "Traceback" not in response.text
    assert client.get("/api/workflows/instances").json()["total"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "i", "definitionId": "wf", "variables": {"n": 587914811526639164753707008}}',
        b'{"id": "i", "definitionId": "wf", "variables": {"s": "\\udb03x"}}',
        b'{"id": "i", "definitionId": "wf", "variables": {"\\udb03": 1}}',
    ],
)
def test_values_the_store_cannot_keep_are_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post(
        "/api/workflows/instances", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "cannot be stored" in response.json()["error"]
    assert client.get("/api/workflows/instances").json()["total"] == 0


def test_page_and_batch_sizes_are_capped(client: httpx.Client) -> None:
    assert (
        client.get("/api/workflows/instances", params={"pageSize": 10**9}).json()["pageSize"] == 200
    )
    too_many = [{"type": "X"}] * 1001
    client.put("/api/engines/e", json={})
    assert client.post("/api/engines/e/events", json=too_many).status_code == 400
    positions = client.get("/api/sync/sources/s/instances", params={"limit": 10**6})
    assert positions.status_code == 400


def test_cors_is_off_by_default(client: httpx.Client) -> None:
    response = client.get("/api/workflows/instances", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_when_configured(sqlite_database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        database_url=sqlite_database_url,
        data_dir=tmp_path,
        cors_origins=["https://dash.example"],
    )
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        allowed = http.options(
            "/api/workflows/instances",
            headers={
                "Origin": "https://dash.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example"
        other = http.get("/api/workflows/instances", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
