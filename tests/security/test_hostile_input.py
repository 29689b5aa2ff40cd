"""Hostile input: oversized bodies, absurd nesting, huge numbers and strings, CORS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tamma_sync.api import create_app
from tamma_sync.api.limits import MAX_JSON_VALUES
from tamma_sync.api.schemas import MAX_PAGE
from tamma_sync.fields import MAX_ENGINE_LABEL_LENGTH
from tamma_sync.models import DEFAULT_TENANT_ID, InstanceWrite
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tests.support.server import serve_in_thread
from tests.support.sse import open_stream

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
        b'{"id": "i", "definitionId": "wf", "variables": {"s": "\\udb03x"}}',
        b'{"id": "i", "definitionId": "wf", "variables": {"\\udb03": 1}}',
    ],
)
def test_unpaired_surrogates_are_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post(
        "/api/workflows/instances", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "surrogate" in response.json()["error"]
    assert client.get("/api/workflows/instances").json()["total"] == 0


def test_an_integer_beyond_64_bits_is_a_double_as_in_the_original(client: httpx.Client) -> None:
    raw = b'{"id": "i", "definitionId": "wf", "variables": {"n": 587914811526639164753707008}}'
    response = client.post(
        "/api/workflows/instances", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert client.get("/api/workflows/instances/i").json()["variables"] == {
        "n": 5.8791481152663916e26
    }


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
        for path in ("/api/workflows/instances", "/api/workflows/definitions"):
            response = http.get(path, headers={"Origin": "https://dash.example"})
            assert response.headers["access-control-allow-origin"] == "https://dash.example"
        other = http.get("/api/workflows/instances", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# --- Text both databases can keep -------------------------------------------------------

NUL_BODIES = [
    ("POST", "/api/workflows/instances", {"id": "a\u0000b", "definitionId": "d"}),
    ("POST", "/api/workflows/instances", {"id": "i", "definitionId": "d", "name": "\u0000"}),
    ("POST", "/api/workflows/instances", {"id": "i", "definitionId": "d", "status": "a\u0000"}),
    (
        "POST",
        "/api/workflows/instances",
        {"id": "i", "definitionId": "d", "correlationId": "\u0000"},
    ),
    ("POST", "/api/workflows/definitions", {"id": "d", "name": "a\u0000b"}),
    ("PUT", "/api/engines/e", {"kind": "a\u0000b"}),
    ("PUT", "/api/engines/e", {"name": "\u0000"}),
]


@pytest.mark.parametrize(("method", "path", "body"), NUL_BODIES)
def test_nul_in_text_is_400_on_both_databases(
    client: httpx.Client, method: str, path: str, body: dict[str, object]
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["error"]
    assert client.get("/api/workflows/instances").json()["total"] == 0
    assert client.get("/api/engines").json() == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/workflows/instances/a%00b",
        "/api/workflows/definitions/a%00b",
        "/api/engines/a%00b",
        "/api/workflows/instances?correlationId=%00",
        "/api/workflows/instances?definitionId=x%00",
        "/api/workflows/instances?status=Running%00",
        "/api/workflows/instances?after=%00",
    ],
)
def test_nul_in_paths_and_queries_is_400(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["error"]


def test_nul_inside_variables_round_trips(client: httpx.Client) -> None:
    variables = {"text": "a\u0000b", "nested": [{"k": "\u0000"}]}
    body = {"id": "i", "definitionId": "d", "variables": variables}
    assert client.post("/api/workflows/instances", json=body).status_code == 201
    assert client.get("/api/workflows/instances/i").json()["variables"] == variables


@pytest.mark.parametrize(
    ("path", "field", "limit"),
    [
        ("/api/engines/e", "kind", 50),
        ("/api/engines/e", "version", 100),
        ("/api/engines/e", "state", 100),
        ("/api/workflows/instances", "sourceId", 100),
        ("/api/workflows/definitions", "sourceId", 100),
    ],
)
def test_text_longer_than_its_column_is_400_and_the_limit_fits(
    client: httpx.Client, path: str, field: str, limit: int
) -> None:
    method = "PUT" if path.startswith("/api/engines") else "POST"
    base: dict[str, object] = {"id": "i", "definitionId": "d", "name": "n"}
    too_long = client.request(method, path, json={**base, field: "x" * (limit + 1)})
    assert too_long.status_code == 400, too_long.text
    assert field in too_long.json()["error"]
    fits = client.request(method, path, json={**base, field: "x" * limit})
    assert fits.status_code in (200, 201), fits.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/workflows/instances", {"id": "slash/id", "definitionId": "d"}),
        ("/api/workflows/instances", {"id": "i", "definitionId": "d/x"}),
        ("/api/workflows/definitions", {"id": "slash/id", "name": "n"}),
    ],
)
def test_an_id_with_a_slash_is_400(
    client: httpx.Client, path: str, body: dict[str, object]
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert "/" in response.json()["error"]
    assert client.get("/api/workflows/instances").json()["total"] == 0


# --- JSON only as JSON defines it -------------------------------------------------------

NESTED_129 = '{"id": "i", "definitionId": "wf", "variables": {"v": ' + "[" * 128 + "]" * 128 + "}}"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbf" + NESTED_129.encode(),
        NESTED_129.encode("utf-16"),
        NESTED_129.replace('"wf"', '"wf", "n": NaN').encode(),
    ],
    ids=["utf8-bom", "utf16", "nan"],
)
def test_the_nesting_limit_holds_whatever_the_encoding(client: httpx.Client, raw: bytes) -> None:
    response = client.post(
        "/api/workflows/instances", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert client.get("/api/workflows/instances").json()["total"] == 0


def test_a_utf8_bom_is_skipped_as_the_original_did(client: httpx.Client) -> None:
    raw = b'\xef\xbb\xbf{"id": "i", "definitionId": "wf"}'
    response = client.post(
        "/api/workflows/instances", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_400(client: httpx.Client, number: str) -> None:
    raw = '{"id": "i", "definitionId": "wf", "variables": {"n": ' + number + "}}"
    headers = {"content-type": "application/json"}
    response = client.post("/api/workflows/instances", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    assert "Malformed JSON" in response.json()["error"]
    stats = '{"stats": {"n": ' + number + "}}"
    report = client.put("/api/engines/e", content=stats, headers=headers)
    assert report.status_code == 400, report.text
    assert client.get("/api/workflows/instances").json()["total"] == 0
    assert client.get("/api/engines").json() == []


def test_a_body_of_too_many_values_is_refused(client: httpx.Client) -> None:
    raw = (
        b'{"id": "i", "definitionId": "wf", "variables": {"v": ['
        + b",".join([b"{}"] * (MAX_JSON_VALUES + 1))
        + b"]}}"
    )
    response = client.post(
        "/api/workflows/instances", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert f"{MAX_JSON_VALUES:,}" in response.json()["error"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/workflows/instances").json()["total"] == 0


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/workflows/instances/" + "x" * 300, 404),
        ("DELETE", "/api/workflows/instances/" + "x" * 300, 404),
        ("GET", "/api/workflows/definitions/" + "x" * 300, 404),
        ("GET", "/api/engines/" + "x" * 300, 404),
        ("GET", "/api/engines/" + "x" * 300 + "/events", 404),
        ("GET", "/api/workflows/instances/" + "x" * 300 + "/events", 404),
        ("GET", "/api/workflows/instances?definitionId=" + "x" * 300, 200),
        ("GET", "/api/workflows/instances?correlationId=" + "x" * 300, 200),
        ("GET", "/api/sync/sources/" + "x" * 300 + "/instances", 200),
    ],
)
def test_overlong_values_in_paths_and_queries_match_nothing(
    client: httpx.Client, method: str, path: str, expected: int
) -> None:
    assert client.request(method, path).status_code == expected


def test_the_deepest_page_is_an_empty_page(client: httpx.Client) -> None:
    client.put("/api/engines/e", json={})
    deepest = {"page": MAX_PAGE, "pageSize": 200}
    instances = client.get("/api/workflows/instances", params=deepest)
    assert instances.status_code == 200, instances.text
    assert instances.json()["data"] == []
    events = client.get("/api/engines/e/events", params=deepest)
    assert events.status_code == 200, events.text
    assert events.json()["data"] == []


def test_a_pushed_elsa_version_longer_than_an_engine_version_is_400(client: httpx.Client) -> None:
    state = {"sourceId": "pushed", "elsaVersion": "3" * (MAX_ENGINE_LABEL_LENGTH + 1)}
    response = client.post("/api/sync/batch", json={"sourceId": "pushed", "state": state})
    assert response.status_code == 400, response.text
    assert "elsaVersion" in response.json()["error"]
    assert client.get("/api/sync/status").json()["sources"] == []


async def test_a_change_too_deep_to_encode_does_not_stop_the_stream(
    store: Store, server_url: str
) -> None:
    """Data the sync stored (or the API took before its nesting limit) may be nested up to
    the store's own limit, deeper than a frame can wrap: the stream passes over it."""
    deep: object = []
    for _ in range(251):  # the deepest the store keeps
        deep = [deep]
    for instance_id, variables in (("deep", {"v": deep}), ("after", {})):
        write = InstanceWrite(id=instance_id, definition_id="wf", variables=variables)
        await store.create_instance(DEFAULT_TENANT_ID, write)
    async with (
        httpx.AsyncClient(base_url=server_url, timeout=10) as http,
        open_stream(http, "/api/events", last_event_id="0") as stream,
    ):
        frames = [await stream.next_event() for _ in range(2)]
    assert [frame.event for frame in frames] == ["instance", "instance"]
    assert "nested too deeply" in frames[0].json()["error"]
    assert frames[1].json()["entityId"] == "after"
