"""The live streams against positions they cannot resume from, and keys revoked mid-stream.

A client must always learn where it stands: a `Last-Event-ID` the log never reached is a
reset (to now), a malformed one is a 400, and a stream whose key is revoked ends with an
`event: revoked` frame within the auth cache time instead of delivering on for good.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tamma_sync.api import create_app
from tamma_sync.models import Scope, now_ms
from tamma_sync.settings import Settings
from tamma_sync.store import PurgeCutoffs, Store
from tests.security.conftest import TENANT_A, Keys
from tests.support.http import TLS
from tests.support.server import serve_in_thread
from tests.support.sse import Frame, SseReader, open_stream

EVENTS = "/api/events"
INSTANCES = "/api/workflows/instances"
STREAMS = [EVENTS, f"{INSTANCES}/i1/events"]
#: A position far beyond any change this test writes.
AHEAD = "1000000000000000"
REVOKED = {"error": "API key revoked", "status": 401}
MALFORMED_MESSAGE = (
    "Last-Event-ID: not an event id of these streams "
    "(expected a whole number from 0 to 9223372036854775807)"
)


@contextlib.asynccontextmanager
async def _client(url: str, key: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10, verify=TLS) as http:
        yield http


async def _create(http: httpx.AsyncClient, instance_id: str, **fields: object) -> None:
    body = {"id": instance_id, "definitionId": "wf", "status": "running", **fields}
    assert (await http.post(INSTANCES, json=body)).status_code == 201


async def _put(http: httpx.AsyncClient, instance_id: str, **fields: object) -> None:
    assert (await http.put(f"{INSTANCES}/{instance_id}", json=fields)).status_code == 200


async def _keep_writing(http: httpx.AsyncClient, instance_id: str) -> None:
    """A real change every 50 ms, until cancelled."""
    step = 0
    while True:
        step += 1
        await _put(http, instance_id, variables={"step": step})
        await asyncio.sleep(0.05)


async def _event(stream: SseReader, within: float = 5.0) -> Frame:
    """The next event frame, which must come within `within` seconds: heartbeats, which
    `next_event` skips, do not extend it."""
    try:
        async with asyncio.timeout(within):
            return await stream.next_event()
    except TimeoutError:
        pytest.fail(f"no event within {within}s")


async def _until_closed(stream: SseReader, within: float) -> list[Frame]:
    """The event frames until the server closes the stream, within `within` seconds in all."""
    try:
        async with asyncio.timeout(within):
            return await stream.events_until_closed()
    except TimeoutError:
        pytest.fail(f"the stream was still open after {within}s")


async def _head(http: httpx.AsyncClient, changes: int) -> int:
    """The seq of the newest change, the `changes`-th one (this tenant alone writes)."""
    async with open_stream(http, EVENTS, last_event_id="0") as stream:
        frames = [await _event(stream) for _ in range(changes)]
    return int(frames[-1].id or "")


@pytest.mark.parametrize("path", STREAMS)
async def test_a_revoked_keys_streams_end_promptly(
    keyed_url: str, keys: Keys, store: Store, path: str
) -> None:
    doomed_key, doomed = await store.create_api_key(TENANT_A, [Scope.WORKFLOWS_VIEW])
    loop = asyncio.get_running_loop()
    async with (
        _client(keyed_url, keys.a) as writer,
        _client(keyed_url, doomed) as revoked_http,
        _client(keyed_url, keys.a) as kept_http,
    ):
        await _create(writer, "i1")
        async with (
            open_stream(revoked_http, path) as revoked_stream,
            open_stream(kept_http, path) as kept_stream,
        ):
            await revoked_stream.next_frame()
            await kept_stream.next_frame()
            assert await store.revoke_api_key(doomed_key.id)
            revoked_at = loop.time()
            writing = asyncio.create_task(_keep_writing(writer, "i1"))
            try:
                frames = await _until_closed(revoked_stream, within=5)
                took = loop.time() - revoked_at
                kept = await _event(kept_stream)
            finally:
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
        again = await revoked_http.get(path)

    assert frames[-1].event == "revoked"
    assert frames[-1].json() == REVOKED
    assert frames[-1].id is None, "a revoked frame does not move the client's position"
    assert took < 2.5, f"auth_cache_seconds=0, yet the stream lived {took:.1f}s"
    assert kept.event in ("instance", "state"), "streams of other keys go on"
    assert (again.status_code, again.json()) == (401, {"error": "Not authenticated"})


async def test_with_a_key_cache_streams_end_within_its_time(
    keys: Keys, store: Store, database_url: str, tmp_path: Path
) -> None:
    cache_seconds = 1.5
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        auth_cache_seconds=cache_seconds,
        sse_heartbeat_seconds=0.2,
    )
    doomed_key, doomed = await store.create_api_key(TENANT_A, [Scope.WORKFLOWS_VIEW])
    loop = asyncio.get_running_loop()
    with serve_in_thread(create_app(settings)) as url:
        async with (
            _client(url, keys.a) as writer,
            _client(url, doomed) as http,
            open_stream(http, EVENTS) as stream,
        ):
            assert (await stream.next_frame()).comment == " connected"
            assert await store.revoke_api_key(doomed_key.id)
            revoked_at = loop.time()
            await _create(writer, "i1")
            writing = asyncio.create_task(_keep_writing(writer, "i1"))
            try:
                frames = await _until_closed(stream, within=cache_seconds + 3)
            finally:
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
            took = loop.time() - revoked_at
    assert frames[-1].event == "revoked"
    assert took < cache_seconds + 0.75, f"ended {took:.1f}s after the revocation"


async def test_a_position_ahead_of_the_log_resets_the_change_stream_to_now(
    keyed_url: str, keys: Keys
) -> None:
    async with _client(keyed_url, keys.a) as http:
        await _create(http, "i1")
        head = await _head(http, changes=1)
        async with open_stream(http, EVENTS, last_event_id=AHEAD) as stream:
            reset = await _event(stream)
            await _put(http, "i1", variables={"step": 1})
            change = await _event(stream)
        async with open_stream(http, EVENTS, last_event_id=reset.id) as stream:
            resumed = await _event(stream)

    assert (reset.event, reset.id) == ("reset", str(head))
    assert reset.json() == {"reason": "ahead of the log", "lastSeq": head}
    assert (change.event, change.json()["entityId"], change.json()["op"]) == (
        "instance",
        "i1",
        "update",
    )
    assert int(change.id or "") > head
    assert (resumed.event, resumed.id) == ("instance", change.id), "the reset's id resumes"


async def test_a_position_ahead_of_the_log_restarts_the_instance_stream(
    keyed_url: str, keys: Keys
) -> None:
    async with _client(keyed_url, keys.a) as http:
        await _create(http, "i1")
        await _create(http, "done", status="Finished")
        head = await _head(http, changes=2)
        async with open_stream(http, f"{INSTANCES}/i1/events", last_event_id=AHEAD) as stream:
            state = await _event(stream)
            await _put(http, "i1", variables={"step": 1})
            live = await _event(stream)
        async with open_stream(http, f"{INSTANCES}/done/events", last_event_id=AHEAD) as stream:
            ended = await _until_closed(stream, within=5)
        missing = await http.get(f"{INSTANCES}/nope/events", headers={"Last-Event-ID": AHEAD})

    assert (state.event, state.id, state.json()["id"]) == ("state", str(head), "i1")
    assert (live.event, live.json()["variables"]) == ("state", {"step": 1})
    assert [f.event for f in ended] == ["state", "end"], "not a 204: its state was never seen"
    assert (missing.status_code, missing.json()) == (404, {"error": "Instance not found"})


async def test_a_reset_for_purged_history_gives_the_position_to_resume_from(
    keyed_url: str, keys: Keys, store: Store
) -> None:
    async with _client(keyed_url, keys.a) as http:
        for n in range(3):
            await _create(http, f"old{n}")
        await store.purge(PurgeCutoffs(tombstones=0, changes=now_ms() + 60_000, engine_events=0))
        await _create(http, "kept")
        async with open_stream(http, EVENTS, last_event_id="1") as stream:
            reset = await _event(stream)
            kept = await _event(stream)
        async with open_stream(http, EVENTS, last_event_id=reset.id) as stream:
            resumed = await _event(stream)

    first = int(kept.id or "")
    assert (reset.event, reset.id) == ("reset", str(first - 1))
    assert reset.json() == {"reason": "history purged", "firstSeq": first}
    assert (resumed.event, resumed.id) == ("instance", kept.id), "no second reset"


@pytest.mark.parametrize("path", STREAMS)
async def test_a_malformed_last_event_id_is_a_clear_400(
    keyed_url: str, keys: Keys, path: str
) -> None:
    malformed = [
        "abc",
        "-1",
        "1.5",
        "5.0",
        "+5",
        "1_000",
        "0x10",
        "\u0661\u0662",
        "9223372036854775808",
        "99999999999999999999",
        "9" * 5000,
    ]
    async with _client(keyed_url, keys.a) as http:
        await _create(http, "i1")
        for value in malformed:
            response = await http.get(path, headers={b"Last-Event-ID": value.encode()})
            assert (response.status_code, response.json()) == (
                400,
                {"error": MALFORMED_MESSAGE},
            ), value
        # An empty id is no id (EventSource sends none then): a fresh stream.
        async with open_stream(http, path, last_event_id="") as stream:
            fresh = await stream.next_frame()
    assert fresh.comment == " connected" or fresh.event == "state"
