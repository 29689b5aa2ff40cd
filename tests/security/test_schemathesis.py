"""Property-based tests against the OpenAPI schema: no 5xx, no response off its schema.

Every operation the server publishes is exercised, the two SSE streams included, on SQLite
and on PostgreSQL, with API keys enforced: each case carries a key holding every scope, so
it reaches its handler instead of stopping at a 401 (only the cases schemathesis makes
without the `Authorization` header on purpose do).

A stream never ends, so a stream case reads the response head (which may take its time)
and then the body for a short window only: a stream still open when the window closes is
a success, as long as its status is not a 5xx and it did not send an error frame or break
off mid-body.

Random generation almost never produces the strings a database chokes on (a NUL, which
PostgreSQL's text cannot hold; a string longer than a column), and schemathesis never puts
a NUL in a path, so a second run puts one such string in one string (path or query
parameter, body field) of each case.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from tamma_sync.api import create_app
from tamma_sync.models import Scope
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tests.conftest import new_postgres_database
from tests.support.http import TLS
from tests.support.server import serve_in_thread

DIALECTS = ["sqlite", "postgresql"]
TENANT = "schemathesis"

STREAMS = re.compile(r"^/api/(events|workflows/instances/\{instance_id\}/events)$")
INSTANCE_STREAM = "/api/workflows/instances/{instance_id}/events"
#: A running instance, so that its stream opens (and stays open) instead of answering 404.
RUNNING_INSTANCE = "schemathesis-running"

#: Seconds a stream's head may take; a slower head is a failure.
STREAM_HEAD_SECONDS = 10.0
#: Seconds a stream's body is read after its head; then the client closes it.
STREAM_WINDOW_SECONDS = 0.15
#: Bytes of a stream's body read at most.
STREAM_MAX_BYTES = 256 * 1024

#: Strings a database may choke on: NUL (PostgreSQL's text cannot hold it), and one longer
#: than any `VARCHAR(255)`. The hostile run puts one of them in one string of each case.
HOSTILE_STRINGS = ["\x00", "nul\x00inside", "x" * 256]

#: derandomize: the same cases on every run, so CI is repeatable.
BASE_SETTINGS = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


# --- The servers: one per dialect, keys enforced -------------------------------------


@dataclass(frozen=True)
class Api:
    dialect: str
    url: str
    key: str
    #: Keeps its connections open between cases, and reads no proxy settings from the
    #: environment for each request: a third of the cases' CPU without it.
    session: requests.Session

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@contextmanager
def _database(dialect: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database of `dialect` for the whole module (tests/conftest.py's are per test)."""
    if dialect == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('schemathesis') / 'db.sqlite'}"
        return
    with new_postgres_database() as url:
        yield url


async def _create_key(database_url: str) -> str:
    store = Store.from_url(database_url)
    try:
        await store.migrate()
        _, key = await store.create_api_key(TENANT, list(Scope), "schemathesis")
    finally:
        await store.close()
    return key


@pytest.fixture(scope="module", params=DIALECTS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A server on each dialect that requires a key (one exists), and that key: every scope."""
    dialect: str = request.param
    with _database(dialect, tmp_path_factory) as database_url:
        key = asyncio.run(_create_key(database_url))
        settings_ = Settings(
            database_url=database_url,
            data_dir=tmp_path_factory.mktemp("schemathesis-data"),
            # Shorter than the read window, so that a stream's live loop runs too.
            sse_heartbeat_seconds=0.05,
        )
        with serve_in_thread(create_app(settings_)) as url, requests.Session() as session:
            session.trust_env = False
            yield _seeded(Api(dialect=dialect, url=url, key=key, session=session))


def _seeded(api: Api) -> Api:
    with httpx.Client(base_url=api.url, timeout=10) as http:
        # Keys are enforced: without one, every case would stop at 401.
        assert http.get("/api/workflows/definitions").status_code == 401
        created = http.post(
            "/api/workflows/instances",
            headers=api.headers,
            json={"id": RUNNING_INSTANCE, "definitionId": "wf", "status": "Running"},
        )
        assert created.status_code == 201, created.text
    return api


# --- The schema, and a hook that makes one string of each case hostile ----------------


def _published_schema() -> dict[str, Any]:
    """The schema the server publishes at /openapi.json (building it needs no database),
    with the running instance as the example of the instance stream's `instance_id`."""
    document = create_app(Settings()).openapi()
    for parameter in document["paths"][INSTANCE_STREAM]["get"]["parameters"]:
        if parameter["name"] == "instance_id":
            parameter["example"] = RUNNING_INSTANCE
    return document


#: Where a string can go in a case: ("query" | "path_parameters", name) or ("body", *path).
Slot = tuple[str | int, ...]


def _string_slots(case: schemathesis.Case[Any]) -> Iterator[Slot]:
    for location in ("path_parameters", "query"):
        for name, value in (getattr(case, location) or {}).items():
            if isinstance(value, str):
                yield (location, name)
    yield from _body_slots(case.body, ("body",))


def _body_slots(value: Any, path: Slot) -> Iterator[Slot]:
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _body_slots(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _body_slots(child, (*path, index))


def _replaced(value: Any, path: Slot, text: str) -> Any:
    """`value` with the string at `path` replaced (copies along the path, no mutation)."""
    if not path:
        return text
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, text)}
    assert isinstance(value, list) and isinstance(head, int)
    return [*value[:head], _replaced(value[head], rest, text), *value[head + 1 :]]


def _with_hostile(case: schemathesis.Case[Any], slot: Slot, text: str) -> schemathesis.Case[Any]:
    location, rest = slot[0], slot[1:]
    if location == "body":
        case.body = _replaced(case.body, rest, text)
    elif location == "query":
        case.query = _replaced(case.query, rest, text)
    else:  # path parameters are sent as generated, so percent-encode it here
        case.path_parameters = _replaced(case.path_parameters, rest, quote(text, safe=""))
    return case


_document = _published_schema()
schema = schemathesis.openapi.from_dict(_document)
#: Fuzzing only: its examples and coverage phases would repeat those of `schema`'s run.
hostile_schema = schemathesis.openapi.from_dict(
    _document,
    config=SchemathesisConfig.from_dict(
        {"phases": {"examples": {"enabled": False}, "coverage": {"enabled": False}}}
    ),
)


@hostile_schema.hook
def flatmap_case(
    _context: schemathesis.HookContext, case: schemathesis.Case[Any]
) -> st.SearchStrategy[schemathesis.Case[Any]]:
    """Each case with one of its strings (parameter or body field) made hostile."""
    slots = list(_string_slots(case))
    if not slots:
        return st.just(case)
    return st.builds(
        _with_hostile, st.just(case), st.sampled_from(slots), st.sampled_from(HOSTILE_STRINGS)
    )


# --- The tests -------------------------------------------------------------------------


@schema.exclude(path_regex=STREAMS.pattern).parametrize()
@settings(BASE_SETTINGS, max_examples=30)
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case[Any], api: Api
) -> None:
    _exercise(case, api)


@schema.include(path_regex=STREAMS.pattern).parametrize()
@settings(BASE_SETTINGS, max_examples=15)
def test_streams_open_without_server_errors(case: schemathesis.Case[Any], api: Api) -> None:
    _exercise(case, api)


@hostile_schema.parametrize()
@settings(BASE_SETTINGS, max_examples=10)
def test_hostile_strings_cause_no_server_errors(case: schemathesis.Case[Any], api: Api) -> None:
    _exercise(case, api)


def _exercise(case: schemathesis.Case[Any], api: Api) -> None:
    if STREAMS.match(case.path):
        _exercise_stream(case, api)
    else:
        case.call_and_validate(
            base_url=api.url,
            session=api.session,
            headers=api.headers,
            checks=[not_a_server_error, response_schema_conformance],
        )


def _exercise_stream(case: schemathesis.Case[Any], api: Api) -> None:
    kwargs = case.as_transport_kwargs(base_url=api.url, headers=api.headers)
    try:
        response, ended = asyncio.run(_read_head_and_window(kwargs))
    except httpx.HTTPError as exc:
        # A slow head, or a stream the server broke off (an exception in its generator).
        exc.add_note(f"\nReproduce with:\n\n    {case.as_curl_command(headers=api.headers)}")
        raise
    # Not response_schema_conformance: the schema documents a stream's 200 as
    # `{"type": "string"}`, which schemathesis applies to each event (an object), and no
    # other status of a stream documents a body; _check_event_stream checks the frames.
    case.validate_response(
        response, checks=[not_a_server_error], headers=api.headers, transport_kwargs=kwargs
    )
    if response.status_code == 200:
        _check_event_stream(response, ended)


async def _read_head_and_window(kwargs: dict[str, Any]) -> tuple[httpx.Response, bool]:
    """Send the request schemathesis built; read the head, then the body for a short window.

    Returns the response with the body read so far, and whether the server ended it."""
    # Prepared by requests, so the bytes are those schemathesis' own transport would send.
    prepared = requests.Request(**kwargs).prepare()
    assert prepared.method is not None
    assert prepared.url is not None
    # Header values go out as Latin-1, as http.client sends them.
    headers = [(_latin1(name), _latin1(value)) for name, value in prepared.headers.items()]
    content = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    assert content is None or isinstance(content, bytes)
    body = bytearray()
    ended = False
    async with httpx.AsyncClient(timeout=STREAM_HEAD_SECONDS, verify=TLS) as client:
        request = client.build_request(
            prepared.method, prepared.url, headers=headers, content=content
        )
        response = await client.send(request, stream=True)
        try:
            async with asyncio.timeout(STREAM_WINDOW_SECONDS):
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) >= STREAM_MAX_BYTES:
                        break
                else:
                    ended = True
        except TimeoutError:
            pass  # still open when the window closed: the bound, not a failure
        finally:
            await response.aclose()
    read = httpx.Response(
        response.status_code, headers=response.headers, content=bytes(body), request=request
    )
    read.elapsed = response.elapsed
    return read, ended


def _latin1(text: str | bytes) -> bytes:
    return text.encode("latin-1") if isinstance(text, str) else text


FIELD = re.compile(r"^([^:]*)(?::[ ]?(.*))?$")


def _check_event_stream(response: httpx.Response, ended: bool) -> None:
    """A 200 is an event stream, none of its frames is an error, and each frame's data is
    the one line of JSON the server always sends."""
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith("text/event-stream"), content_type
    blocks = re.split(rb"\r\n\r\n|\n\n|\r\r", response.content)
    if not ended:
        blocks = blocks[:-1]  # the last block may be a frame still arriving when cut
    for block in blocks:
        fields: dict[str, str] = {}
        for line in re.split(r"\r\n|\n|\r", block.decode("utf-8")):
            if not line or line.startswith(":"):
                continue
            match = FIELD.match(line)
            assert match is not None
            name, value = match.group(1), match.group(2) or ""
            fields[name] = f"{fields[name]}\n{value}" if name in fields else value
        assert fields.get("event") != "error", f"error frame: {block!r}"
        if "data" in fields:
            try:
                json.loads(fields["data"])
            except ValueError as exc:
                raise AssertionError(f"frame data is not JSON: {block!r}") from exc
