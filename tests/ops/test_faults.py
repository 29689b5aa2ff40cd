"""Faults during a sync: PostgreSQL restarting, and the server killed with SIGKILL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tamma_sync.elsa import ElsaClient
from tamma_sync.models import DEFAULT_TENANT_ID, InstancePatch, InstanceWrite
from tamma_sync.settings import SourceSettings
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tamma_sync.store import InstanceQuery, Store
from tamma_sync.store.store import PING_AFTER_IDLE_SECONDS
from tamma_sync.sync import StoreSink, SyncOptions, SyncService
from tests.support.http import TLS
from tests.support.mirror import assert_mirror_equals
from tests.support.process import running_server
from tests.support.server import serve_in_thread
from tests.support.throwaway_postgres import THROWAWAY_POSTGRES, ThrowawayPostgres

T = DEFAULT_TENANT_ID


@THROWAWAY_POSTGRES
async def test_postgres_restart_during_a_sync_converges(
    throwaway_postgres: ThrowawayPostgres, throwaway_database_url: str
) -> None:
    """The restart is of a cluster of the test's own: the machine's server has other users."""
    simulator = ElsaSimulator(SimulatorConfig(seed=8, definitions=5, instances=3_000))
    store = Store.from_url(throwaway_database_url)
    await store.migrate()
    try:
        with serve_in_thread(simulator.app) as elsa_url:
            source = SourceSettings(id="elsa", url=elsa_url, poll_interval=0.1)
            options = SyncOptions(page_size=100, reconcile_interval=0)
            async with ElsaClient.from_settings(source, page_size=100) as client:
                service = SyncService(source, client, StoreSink(store, T), options)
                # Slow pages keep the cycle going for seconds, whatever the machine's speed.
                simulator.faults.inject("slow", delay=0.1, path="/workflow-instances")
                cycle = asyncio.create_task(service.run_cycle())
                await asyncio.sleep(0.3)
                assert not cycle.done()
                await asyncio.to_thread(throwaway_postgres.restart)
                # The cycle fails at its first statement while the database is away (or on
                # the connection it closed), else it goes on with a renewed pool.
                if cycle.done():
                    failed = cycle.result().error
                    assert failed is not None, "the restart happened in the middle of the cycle"
                await cycle
                simulator.faults.clear()
                simulator.step(100)
                for _ in range(20):  # cycles until the database answers again
                    report = await service.run_cycle()
                    if report.error is None:
                        break
                    await asyncio.sleep(0.5)
        assert report.error is None
        await assert_mirror_equals(store, simulator, details=False)
    finally:
        await store.close()


@THROWAWAY_POSTGRES
async def test_reads_after_postgres_restarts_answer_at_once(
    throwaway_postgres: ThrowawayPostgres, throwaway_database_url: str
) -> None:
    """Pooled connections are pinged only once they sat idle (under load that round trip
    was a fifth of a page's server CPU): the pool's connections, all opened before the
    restart, are replaced before the first reads after it, which answer; so is the one the
    store holds out of the pool for single-row reads and writes, which commit. The restart
    is of a cluster of the test's own: the machine's server has other users."""
    store = Store.from_url(throwaway_database_url)
    await store.migrate()
    try:
        await store.create_instance(T, InstanceWrite(id="i1", definition_id="wf"))
        # Reads in parallel: several connections in the pool, all opened before the restart.
        assert all(await asyncio.gather(*(store.get_instance(T, "i1") for _ in range(6))))
        await asyncio.to_thread(throwaway_postgres.restart)
        await asyncio.sleep(PING_AFTER_IDLE_SECONDS)
        # Pages run their SQL through the driver, not through SQLAlchemy's execution: the
        # pool renews connections for them just the same.
        pages = await asyncio.gather(*(store.list_instances(T, InstanceQuery()) for _ in range(6)))
        assert [page.total for page in pages] == [1] * 6
        assert all(await asyncio.gather(*(store.get_instance(T, "i1") for _ in range(6))))
        await store.create_instance(T, InstanceWrite(id="i2", definition_id="wf"))
        await store.update_instance(T, "i2", InstancePatch(status="Finished"))
        found = await store.get_instance(T, "i2")
        assert found is not None and found.status == "Finished"
    finally:
        await store.close()


def test_server_killed_mid_initial_sync_resumes(database_url: str, tmp_path: Path) -> None:
    simulator = ElsaSimulator(SimulatorConfig(seed=12, definitions=5, instances=500))
    # A slow ELSA until the kill, so that it lands mid-sync whatever the machine's speed.
    simulator.faults.inject("slow", delay=0.05, path="/workflow-instances")
    with serve_in_thread(simulator.app) as elsa_url:
        env = {
            "TAMMA_SYNC_DATABASE_URL": database_url,
            "TAMMA_SYNC_ELSA_URL": elsa_url,
            "TAMMA_SYNC_ELSA_API_KEY": ADMIN_API_KEY,
            "TAMMA_SYNC_SYNC_PAGE_SIZE": "50",
            "TAMMA_SYNC_SYNC_DETAILS": "all",
            "TAMMA_SYNC_POLL_INTERVAL": "0.2",
        }
        with running_server(env, tmp_path) as (url, _, _):
            _until(lambda: _mirrored(url) >= 50)
        # SIGKILLed on leaving the block, in the middle of the initial sync.
        partial = asyncio.run(_count(database_url))
        assert partial < 500
        simulator.faults.clear()
        simulator.step(30)
        with running_server(env, tmp_path) as (url, _, _):
            _until(
                lambda: _phase(url) == "idle" and _mirrored(url) == len(simulator.instance_ids())
            )
        asyncio.run(_assert_equal(database_url, simulator))


def _mirrored(url: str) -> int:
    sources = httpx.get(f"{url}/api/sync/status", verify=TLS).json()["sources"]
    return int(sources[0]["counts"]["instances"]) if sources else 0


def _phase(url: str) -> str | None:
    sources = httpx.get(f"{url}/api/sync/status", verify=TLS).json()["sources"]
    return sources[0]["phase"] if sources else None


def _until(condition: object, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not (callable(condition) and condition()):
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


async def _count(database_url: str) -> int:
    store = Store.from_url(database_url)
    try:
        return (await store.source_counts(T)).get("elsa", {}).get("instances", 0)
    finally:
        await store.close()


async def _assert_equal(database_url: str, simulator: ElsaSimulator) -> None:
    store = Store.from_url(database_url)
    try:
        await assert_mirror_equals(store, simulator)
    finally:
        await store.close()
