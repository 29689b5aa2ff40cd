"""How the sync runs: embedded in `serve`, pushing to a remote server, one leader per source."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tamma_sync.api import create_app
from tamma_sync.elsa import ElsaClient
from tamma_sync.models import DEFAULT_TENANT_ID, SyncBatch, SyncPhase
from tamma_sync.settings import Settings, SourceSettings
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator
from tamma_sync.store import NewRows, Store, WriteResult
from tamma_sync.sync import HttpSink, StoreSink, SyncOptions, SyncService
from tests.support.mirror import assert_mirror_equals
from tests.support.server import serve_in_thread
from tests.sync.conftest import PAGE_SIZE

T = DEFAULT_TENANT_ID


async def test_push_mode_mirrors_through_the_batch_endpoint(
    database_url: str,
    tmp_path: Path,
    store: Store,
    simulator: ElsaSimulator,
    source: SourceSettings,
    elsa_client: ElsaClient,
    options: SyncOptions,
) -> None:
    server_settings = Settings(database_url=database_url, data_dir=tmp_path)
    with serve_in_thread(create_app(server_settings)) as server_url:
        sink = HttpSink(server_url)
        try:
            service = SyncService(source, elsa_client, sink, options)
            assert (await service.run_cycle()).error is None
            simulator.delete_instances(simulator.instance_ids()[:7])
            simulator.delete_definition(sorted(simulator.snapshot(details=False).definitions)[-1])
            simulator.step(40)
            report = await service.run_cycle()
            assert report.error is None
            assert report.written.deleted >= 7
            await assert_mirror_equals(store, simulator)

            async with httpx.AsyncClient(base_url=server_url) as http:
                status = (await http.get("/api/sync/status")).json()["sources"]
            assert [s["sourceId"] for s in status] == ["elsa"]
            assert status[0]["phase"] == "idle"
            assert status[0]["counts"]["instances"] == len(simulator.instance_ids())

            # A restarted pushing worker picks its cursor up from the server.
            resumed = SyncService(source, elsa_client, sink, options)
            again = await resumed.run_cycle()
            assert (again.written.created, again.written.updated) == (0, 0)
        finally:
            await sink.aclose()


class SlowServerSink(HttpSink):
    """Pushes to a server that takes a while to answer each batch; the instances of each
    batch pushed are counted."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.pushed: list[int] = []

    async def apply(
        self,
        batch: SyncBatch,
        made: NewRows | None = None,
        sent: asyncio.Event | None = None,
    ) -> WriteResult:
        result = await super().apply(batch, made, sent)
        self.pushed.append(len(batch.instances))
        await asyncio.sleep(0.1)
        return result


async def test_a_pushing_worker_sends_each_page_on_its_own_however_slow_the_server(
    database_url: str,
    tmp_path: Path,
    store: Store,
    simulator: ElsaSimulator,
    source: SourceSettings,
    elsa_client: ElsaClient,
    options: SyncOptions,
) -> None:
    # Pages joined could outgrow the request size the server takes, and be refused whole.
    server_settings = Settings(database_url=database_url, data_dir=tmp_path)
    with serve_in_thread(create_app(server_settings)) as server_url:
        sink = SlowServerSink(server_url)
        try:
            service = SyncService(source, elsa_client, sink, options)
            assert (await service.run_cycle()).error is None
        finally:
            await sink.aclose()
    assert max(sink.pushed) == PAGE_SIZE
    await assert_mirror_equals(store, simulator)


def test_serve_syncs_configured_source_and_reports_status(
    database_url: str, tmp_path: Path, simulator: ElsaSimulator, elsa_url: str
) -> None:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        elsa_url=elsa_url,
        elsa_api_key=ADMIN_API_KEY,
        poll_interval=0.2,
        sync_page_size=PAGE_SIZE,
        sync_details="all",
    )
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        source = _wait_for_source(http, lambda s: s["phase"] == "idle")
        total = http.get("/api/workflows/instances").json()["total"]
        assert total == len(simulator.instance_ids())
        assert source["counts"]["instances"] == total
        assert source["elsaVersion"] == "3.7.1"
        assert source["lastCycleMs"] >= 0

        engine_states = http.get("/api/sync/status").json()
        assert engine_states["sources"][0]["url"] == elsa_url

        created = simulator.create_instances(3)
        trigger = http.post("/api/sync/trigger")
        assert (trigger.status_code, trigger.json()) == (202, {"triggered": ["elsa"]})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if http.get(f"/api/workflows/instances/{created[-1]}").status_code == 200:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("triggered sync did not bring the new instance")

        unknown = http.post("/api/sync/trigger", params={"source": "nope"})
        assert unknown.status_code == 404


async def test_one_leader_per_source(
    store: Store, database_url: str, source: SourceSettings, options: SyncOptions
) -> None:
    """Two workers on one database (two processes in production): one syncs, one waits."""
    other_store = Store.from_url(database_url)
    try:
        async with (
            ElsaClient.from_settings(source, page_size=PAGE_SIZE) as client_a,
            ElsaClient.from_settings(source, page_size=PAGE_SIZE) as client_b,
        ):
            a = SyncService(source, client_a, StoreSink(store, T), options)
            b = SyncService(source, client_b, StoreSink(other_store, T), options)
            runs = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
            await _until(lambda: max(a.state.counters.cycles, b.state.counters.cycles) >= 3)
            leader, follower = (a, b) if a.state.counters.cycles else (b, a)
            assert follower.state.counters.cycles == 0, "the second worker never ran a cycle"
            # The leader stops (its process ends): the other one takes over.
            leader.stop()
            await runs[0 if leader is a else 1]
            await _until(lambda: follower.state.counters.cycles >= 1)
            follower.stop()
            await asyncio.gather(*runs)
    finally:
        await other_store.close()
    state = await store.source_state(T, source.id)
    assert state is not None and state.phase is SyncPhase.IDLE


def _wait_for_source(http: httpx.Client, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sources: list[dict[str, Any]] = http.get("/api/sync/status").json()["sources"]
        if sources and ready(sources[0]):
            return sources[0]
        time.sleep(0.1)
    raise AssertionError("the embedded sync did not finish a cycle")


async def _until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
