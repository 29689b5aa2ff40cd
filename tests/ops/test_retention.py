"""Retention purges by age: tombstones, change log, engine events, and ended instances."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from tamma_sync.api import create_app
from tamma_sync.elsa import ElsaTimestamp
from tamma_sync.models import (
    DEFAULT_TENANT_ID,
    DefinitionWrite,
    EngineEventWrite,
    EngineReport,
    InstanceWrite,
    now_ms,
)
from tamma_sync.settings import DAY_MS, Settings, SourceSettings
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tamma_sync.store import InstanceQuery, PurgeCutoffs, Store
from tamma_sync.store.trends import TrendWindow
from tamma_sync.sync import HttpSink, SyncOptions, SyncService
from tests.support.server import serve_in_thread
from tests.support.sse import open_stream

T = DEFAULT_TENANT_ID


def _future() -> int:
    """Later than anything the test writes (read when the test runs, not at import)."""
    return now_ms() + 60_000


async def _seed(store: Store) -> None:
    await store.upsert_definitions(T, [DefinitionWrite(id="wf", name="Flow")])
    await store.put_instances(
        T,
        [
            InstanceWrite(id="done", definition_id="wf", status="completed", finished_at=1_000),
            InstanceWrite(id="running", definition_id="wf", status="running"),
            InstanceWrite(id="gone", definition_id="wf", status="running"),
        ],
    )
    await store.delete_instance(T, "gone")
    await store.put_engine(T, "e", EngineReport(state="IDLE"))
    await store.add_engine_events(
        T, "e", [EngineEventWrite(type="PR_CREATED")], keep=100, max_age_ms=10**12
    )


async def test_purge_everything_old_except_ended_instances_by_default(store: Store) -> None:
    await _seed(store)
    future = _future()
    purged = await store.purge(
        PurgeCutoffs(tombstones=future, changes=future, engine_events=future), batch=2
    )
    assert purged == {
        "tombstoned definitions": 0,
        "tombstoned instances": 1,
        "changes": 5,
        "engine events": 1,
        "ended instances": 0,
    }
    assert await store.changes_after(0) == []
    assert await store.first_seq() is None
    ids = [i.id for i in (await store.list_instances(T, InstanceQuery())).items]
    assert ids == ["done", "running"], "live instances are never purged by default"
    # The purged tombstone is really gone: the id can be created afresh.
    recreated = await store.create_instance(T, InstanceWrite(id="gone", definition_id="wf"))
    assert recreated.revision == 1


async def test_ended_instances_purged_when_asked(store: Store) -> None:
    await _seed(store)
    past = 0
    before = await store.last_seq()
    purged = await store.purge(
        PurgeCutoffs(tombstones=past, changes=past, engine_events=past, ended_instances=2_000)
    )
    assert purged["ended instances"] == 1
    assert purged["changes"] == 0
    ids = [i.id for i in (await store.list_instances(T, InstanceQuery())).items]
    assert ids == ["running"]
    # Recorded as deleted, so that streams and change-log readers drop it too.
    [change] = await store.changes_after(before)
    assert (change.entity_id, change.op, change.sub_status) == ("done", "delete", "Finished")
    assert change.data["id"] == "done"


async def test_a_stream_hears_of_the_ended_instances_purged(store: Store, server_url: str) -> None:
    async with httpx.AsyncClient(base_url=server_url, timeout=10) as http:
        for instance_id, status in (("old", "Finished"), ("live", "Running")):
            body = {"id": instance_id, "definitionId": "wf", "status": status}
            assert (await http.post("/api/workflows/instances", json=body)).status_code == 201
        async with open_stream(http, "/api/events") as stream:
            await store.purge(
                PurgeCutoffs(tombstones=0, changes=0, engine_events=0, ended_instances=_future())
            )
            event = await stream.next_event()
    assert event.event == "instance"
    assert (event.json()["entityId"], event.json()["op"]) == ("old", "delete")


async def test_stream_resumed_from_purged_history_says_reset(store: Store, server_url: str) -> None:
    async with httpx.AsyncClient(base_url=server_url, timeout=10) as http:
        for n in range(3):
            await http.post("/api/workflows/instances", json={"id": f"i{n}", "definitionId": "wf"})
        await store.purge(PurgeCutoffs(tombstones=0, changes=_future(), engine_events=0))
        await http.post("/api/workflows/instances", json={"id": "after", "definitionId": "wf"})
        async with open_stream(http, "/api/events", last_event_id="1") as stream:
            reset = await stream.next_event()
            kept = await stream.next_event()
    assert reset.event == "reset"
    assert reset.json()["reason"] == "history purged"
    assert kept.json()["entityId"] == "after"


async def test_trend_rollups_go_once_no_window_reads_them(store: Store) -> None:
    """By the minute they are read for an hour, by the quarter hour for a day, by the hour
    for a week: each is kept a day longer, then purged (and an older one is never
    written); what a window still shows stays."""
    day = 86_400_000
    now = now_ms() // 3_600_000 * 3_600_000
    ages = {"today": 0, "three-days": 3 * day, "ten-days": 10 * day}
    await store.put_instances(
        T,
        [
            InstanceWrite(id=name, definition_id="wf", created_at=now - age, updated_at=now - age)
            for name, age in ages.items()
        ],
    )

    def started(window: TrendWindow) -> int:
        return sum(interval["started"] for interval in counted[window])

    by_minute = TrendWindow(until=now // 60_000 + 1, step_minutes=1, slots=60)
    by_hour = TrendWindow(until=now // 60_000 + 60, step_minutes=60, slots=8 * 24)
    counted = {w: await store.trend(T, None, w) for w in (by_minute, by_hour)}
    # Ten days back is older than any span keeps: never written.
    assert (started(by_minute), started(by_hour)) == (1, 2)

    # Three days on: today's minutes and quarter hours go, hours stay for a week and a day.
    purged = await store.purge(
        PurgeCutoffs(tombstones=0, changes=0, engine_events=0, trends_now=now + 3 * day)
    )
    # Two rows per span and instance: its definition's, and all definitions'.
    assert purged["trend rollups of 1 min"] == 2
    assert purged["trend rollups of 15 min"] == 2
    assert purged["trend rollups of 60 min"] == 0
    counted = {w: await store.trend(T, None, w) for w in (by_minute, by_hour)}
    assert (started(by_minute), started(by_hour)) == (0, 2)


def _user_instances(simulator: ElsaSimulator) -> list[Any]:
    return [i for i in simulator.snapshot().instances.values() if not i.is_system]


def _ended_before(simulator: ElsaSimulator, cutoff: int) -> set[str]:
    """The ids of the simulator's ended instances that finished before `cutoff` (some,
    not all: retention must purge some and keep others)."""
    instances = _user_instances(simulator)
    ended = {
        i.id
        for i in instances
        if i.sub_status in ("Finished", "Cancelled", "Faulted")
        and i.finished_at is not None
        and ElsaTimestamp.parse(i.finished_at).epoch_ms < cutoff
    }
    assert 0 < len(ended) < len(instances)
    return ended


def test_a_server_keeps_ended_instances_out_once_retention_purged_them(
    database_url: str, tmp_path: Path
) -> None:
    """`TAMMA_SYNC_RETENTION_ENDED_INSTANCES_DAYS` on a server syncing a live ELSA that still
    holds them: the ended instances finished before the cutoff leave the mirror and stay
    out, sweep after sweep; the others stay mirrored."""
    simulator = ElsaSimulator(SimulatorConfig(seed=65, instances=150))
    old_ended = _ended_before(simulator, now_ms() - DAY_MS)
    kept = len(_user_instances(simulator)) - len(old_ended)
    with serve_in_thread(simulator.app) as elsa_url:
        settings = Settings(
            database_url=database_url,
            data_dir=tmp_path,
            elsa_url=elsa_url,
            elsa_api_key=ADMIN_API_KEY,
            poll_interval=0.1,
            reconcile_interval=0,
            reconcile_share=1.0,
            retention_interval=0.2,
            retention_ended_instances_days=1,
        )
        with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as http:

            def total() -> int:
                return int(http.get("/api/workflows/instances").json()["total"])

            deadline = time.monotonic() + 20
            while total() != kept:
                assert time.monotonic() < deadline, f"{total()} mirrored, want {kept}"
                time.sleep(0.1)
            # Sweeps (every cycle) and purges (every 0.2 s) go on: none brings one back.
            for _ in range(20):
                time.sleep(0.1)
                assert total() == kept
            statuses = [
                http.get(f"/api/workflows/instances/{instance_id}").status_code
                for instance_id in sorted(old_ended)[:5]
            ]
            assert statuses == [404] * len(statuses)


async def test_a_pushing_sync_follows_the_servers_retention_of_ended_instances(
    database_url: str, tmp_path: Path
) -> None:
    """A sync pushing to a server that purges ended instances, without that setting of its
    own, learns the server's (`/api/sync/status`): its sweeps do not push again the ended
    instances the server purged, which ELSA still holds."""
    simulator = ElsaSimulator(SimulatorConfig(seed=66, instances=150))
    old_ended = _ended_before(simulator, now_ms() - DAY_MS)
    kept = len(_user_instances(simulator)) - len(old_ended)
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        retention_interval=1.0,
        retention_ended_instances_days=1,
    )
    options = SyncOptions(reconcile_interval=0, reconcile_share=1.0)
    assert options.keep_ended_ms is None
    with serve_in_thread(simulator.app) as elsa_url, serve_in_thread(create_app(settings)) as url:
        source = SourceSettings(id="elsa", url=elsa_url, api_key=ADMIN_API_KEY)
        sink = HttpSink(url)
        try:
            async with (
                options.client_for(source) as client,
                httpx.AsyncClient(base_url=url) as http,
            ):

                async def total() -> int:
                    return int((await http.get("/api/workflows/instances")).json()["total"])

                service = SyncService(source, client, sink, options)
                assert (await service.run_cycle()).error is None
                deadline = time.monotonic() + 20
                while await total() != kept:
                    assert time.monotonic() < deadline, f"{await total()} mirrored, want {kept}"
                    await asyncio.sleep(0.1)
                for _ in range(3):  # sweeps of every instance, each faster than a purge
                    report = await service.run_cycle()
                    assert report.reconciled and report.error is None
                    assert (report.written.created, await total()) == (0, kept)
        finally:
            await sink.aclose()
