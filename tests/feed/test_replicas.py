"""Two server processes on one PostgreSQL, and PostgreSQL restarting under subscribers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.support.process import running_server
from tests.support.sse import open_stream
from tests.support.throwaway_postgres import THROWAWAY_POSTGRES, ThrowawayPostgres

INSTANCE = "/api/workflows/instances"


def _plain(url: str) -> str:
    return url.replace("+asyncpg", "")


async def test_change_written_through_a_reaches_subscriber_of_b(
    postgres_database_url: str, tmp_path: Path
) -> None:
    env = {"TAMMA_SYNC_DATABASE_URL": _plain(postgres_database_url)}
    with running_server(env, tmp_path) as (a, _, _), running_server(env, tmp_path) as (b, _, _):
        async with (
            httpx.AsyncClient(base_url=a, timeout=10) as http_a,
            httpx.AsyncClient(base_url=b, timeout=10) as http_b,
        ):
            await http_a.post(INSTANCE, json={"id": "i1", "definitionId": "wf"})
            async with (
                open_stream(http_b, f"{INSTANCE}/i1/events") as on_b,
                open_stream(http_b, "/api/events") as everything_on_b,
            ):
                assert (await on_b.next_event()).event == "state"
                await everything_on_b.next_frame()
                await http_a.put(f"{INSTANCE}/i1", json={"currentActivity": "from-a"})
                frame = await on_b.next_event(within=5)
                change = await everything_on_b.next_event(within=5)
    assert frame.json()["currentActivity"] == "from-a"
    assert change.json()["data"]["currentActivity"] == "from-a"


@THROWAWAY_POSTGRES
async def test_subscribers_receive_every_change_after_postgres_restarts(
    throwaway_postgres: ThrowawayPostgres, throwaway_database_url: str, tmp_path: Path
) -> None:
    """The restart is of a cluster of the test's own: the machine's server has other users."""
    env = {"TAMMA_SYNC_DATABASE_URL": _plain(throwaway_database_url)}
    with running_server(env, tmp_path) as (url, _, _):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            await http.post(INSTANCE, json={"id": "i1", "definitionId": "wf"})
            async with (
                open_stream(http, f"{INSTANCE}/i1/events") as stream,
                open_stream(http, "/api/events", entity="instance") as everything,
            ):
                await stream.next_event()
                await everything.next_frame()
                await asyncio.to_thread(throwaway_postgres.restart)
                written = []
                for step in range(5):
                    await _put_until_accepted(http, "i1", {"currentActivity": f"after-{step}"})
                    written.append(f"after-{step}")
                got = [(await stream.next_event(within=15)).json() for _ in written]
                got_all = [(await everything.next_event(within=15)).json() for _ in written]
    assert [g["currentActivity"] for g in got] == written
    assert [g["data"]["currentActivity"] for g in got_all] == written


async def _put_until_accepted(
    http: httpx.AsyncClient, instance_id: str, body: dict[str, str]
) -> None:
    """Right after a restart the server may answer 503 (database coming back): retry."""
    for _ in range(100):
        response = await http.put(f"{INSTANCE}/{instance_id}", json=body)
        if response.status_code == 200:
            return
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.2)
    raise AssertionError("the server never accepted the write after the restart")
