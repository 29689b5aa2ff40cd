"""The live streams with a real SSE client against a real server socket."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tamma_sync.api import create_app
from tamma_sync.settings import Settings
from tests.feed.conftest import HEARTBEAT_SECONDS
from tests.support.server import serve_in_thread
from tests.support.sse import SseReader, open_stream

INSTANCE = "/api/workflows/instances"


async def _create(http: httpx.AsyncClient, instance_id: str, **fields: object) -> None:
    body = {"id": instance_id, "definitionId": "wf", "status": "running", **fields}
    assert (await http.post(INSTANCE, json=body)).status_code == 201


async def _put(http: httpx.AsyncClient, instance_id: str, **fields: object) -> None:
    assert (await http.put(f"{INSTANCE}/{instance_id}", json=fields)).status_code == 200


async def _quiet_for(stream: SseReader, seconds: float) -> None:
    """Only heartbeats arrive for `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            frame = await stream.next_frame(left)
        except TimeoutError:
            return
        assert frame.comment == "heartbeat", frame


async def test_instance_stream_frames_headers_and_end(http: httpx.AsyncClient) -> None:
    await _create(http, "i1", variables={"step": 1})
    async with open_stream(http, f"{INSTANCE}/i1/events") as stream:
        headers = stream.response.headers
        assert headers["content-type"] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["connection"] == "keep-alive"
        assert headers["x-accel-buffering"] == "no"

        first = await stream.next_event()
        assert first.event == "state"
        assert first.id is not None and int(first.id) > 0
        assert first.json() == (await http.get(f"{INSTANCE}/i1")).json()

        await _put(http, "i1", variables={"step": 2})
        second = await stream.next_event()
        assert (second.event, second.json()["variables"]) == ("state", {"step": 2})
        assert int(second.id or 0) > int(first.id)

        # The .NET sync's every-cycle PUT with the same content: no frame at all.
        await _put(http, "i1", variables={"step": 2}, updatedAt=1)
        await _quiet_for(stream, HEARTBEAT_SECONDS * 3)

        await _put(http, "i1", status="Finished")
        rest = await stream.events_until_closed()
    assert [f.event for f in rest] == ["state", "end"]
    assert rest[0].json()["subStatus"] == "Finished"
    assert rest[1].json() == {"id": "i1", "subStatus": "Finished"}
    assert rest[0].id == rest[1].id


async def test_heartbeat_comments_while_idle(http: httpx.AsyncClient) -> None:
    await _create(http, "i1")
    async with open_stream(http, f"{INSTANCE}/i1/events") as stream:
        await stream.next_event()
        beats = [await stream.next_frame(HEARTBEAT_SECONDS * 4) for _ in range(2)]
    assert [b.comment for b in beats] == ["heartbeat", "heartbeat"]


async def test_deleted_instance_ends_the_stream(http: httpx.AsyncClient) -> None:
    await _create(http, "i1")
    async with open_stream(http, f"{INSTANCE}/i1/events") as stream:
        await stream.next_event()
        assert (await http.delete(f"{INSTANCE}/i1")).status_code == 200
        frames = await stream.events_until_closed()
    assert [f.event for f in frames] == ["deleted"]
    assert frames[0].json()["id"] == "i1"


async def test_unknown_instance_is_404_json(http: httpx.AsyncClient) -> None:
    response = await http.get(f"{INSTANCE}/nope/events")
    assert (response.status_code, response.json()) == (404, {"error": "Instance not found"})


async def test_already_ended_instance_sends_state_then_end(http: httpx.AsyncClient) -> None:
    await _create(http, "i1", status="cancelled")
    async with open_stream(http, f"{INSTANCE}/i1/events") as stream:
        frames = await stream.events_until_closed()
    assert [f.event for f in frames] == ["state", "end"]


async def test_resume_gets_exactly_the_missed_changes(http: httpx.AsyncClient) -> None:
    await _create(http, "i1")
    await _create(http, "other")
    async with open_stream(http, f"{INSTANCE}/i1/events") as stream:
        last_id = (await stream.next_event()).id
    for step in range(3):
        await _put(http, "i1", currentActivity=f"step-{step}")
        await _put(http, "other", currentActivity=f"step-{step}")
    assert last_id is not None
    async with open_stream(http, f"{INSTANCE}/i1/events", last_event_id=last_id) as stream:
        missed = [await stream.next_event() for _ in range(3)]
        await _put(http, "i1", currentActivity="live")
        live = await stream.next_event()
    assert [f.json()["currentActivity"] for f in missed] == ["step-0", "step-1", "step-2"]
    assert live.json()["currentActivity"] == "live"
    ids = [int(f.id or 0) for f in [*missed, live]]
    assert ids == sorted(ids) and len(set(ids)) == 4


async def test_resume_after_the_end_is_204_so_eventsource_stops(http: httpx.AsyncClient) -> None:
    await _create(http, "i1")
    await _put(http, "i1", status="failed")
    async with open_stream(http, f"{INSTANCE}/i1/events") as stream:
        frames = await stream.events_until_closed()
    response = await http.get(
        f"{INSTANCE}/i1/events", headers={"Last-Event-ID": frames[-1].id or ""}
    )
    assert response.status_code == 204


async def test_global_stream_filters_and_resumes(http: httpx.AsyncClient) -> None:
    async with open_stream(http, "/api/events", entity="instance", subStatus="Faulted") as stream:
        assert (await stream.next_frame()).comment == " connected"
        await _create(http, "ok")
        await _create(http, "bad")
        await _put(http, "ok", status="completed")
        await _put(http, "bad", status="failed")
        faulted = await stream.next_event()
        assert (faulted.event, faulted.json()["entityId"], faulted.json()["op"]) == (
            "instance",
            "bad",
            "update",
        )
        assert faulted.json()["data"]["status"] == "failed"
        await _quiet_for(stream, HEARTBEAT_SECONDS * 2)
    assert faulted.id is not None

    async with open_stream(http, "/api/events", last_event_id="0") as stream:
        everything = [await stream.next_event() for _ in range(4)]
    assert [(f.json()["entityId"], f.json()["op"]) for f in everything] == [
        ("ok", "create"),
        ("bad", "create"),
        ("ok", "update"),
        ("bad", "update"),
    ]


async def test_bad_stream_filter_is_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/events", params={"subStatus": "Sleeping"})
    assert response.status_code == 400
    assert "subStatus" in response.json()["error"]


@pytest.mark.parametrize("path", ["/api/events", f"{INSTANCE}/i1/events"])
async def test_shutdown_ends_streams_with_a_retry_hint(settings: Settings, path: str) -> None:
    server = serve_in_thread(create_app(settings))
    url = server.__enter__()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        await _create(http, "i1")
        async with open_stream(http, path) as stream:
            await stream.next_frame()
            stopping = asyncio.create_task(asyncio.to_thread(server.__exit__, None, None, None))
            frames = await stream.events_until_closed(within=10)
            await stopping
    assert frames[-1].retry is not None, "clients are told to reconnect"
