"""`tamma-sync sync` as a real process: killed with SIGKILL mid-sync, then resumed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from tamma_sync.models import DEFAULT_TENANT_ID, ChangeOp, EntityKind
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tamma_sync.store import Store
from tests.support.mirror import assert_mirror_equals
from tests.support.process import CLI, run_cli
from tests.support.server import serve_in_thread

INSTANCES = 500


def test_sync_killed_mid_initial_sync_resumes_without_duplicates(
    database_url: str, tmp_path: Path
) -> None:
    simulator = ElsaSimulator(SimulatorConfig(seed=21, definitions=6, instances=INSTANCES))
    # A slow ELSA until the kill, so that it lands mid-sync whatever the machine's speed.
    simulator.faults.inject("slow", delay=0.05, path="/workflow-instances")
    with serve_in_thread(simulator.app) as elsa_url:
        env = {
            **os.environ,
            "TAMMA_SYNC_DATABASE_URL": database_url,
            "TAMMA_SYNC_ELSA_URL": elsa_url,
            "TAMMA_SYNC_ELSA_API_KEY": ADMIN_API_KEY,
            "TAMMA_SYNC_SYNC_PAGE_SIZE": "50",
            "TAMMA_SYNC_SYNC_DETAILS": "all",
        }
        worker = subprocess.Popen([*CLI, "sync"], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while (partial := asyncio.run(_mirrored_count(database_url))) < 50:
                assert worker.poll() is None, "the sync worker exited on its own"
                assert time.monotonic() < deadline, "the sync worker wrote nothing in time"
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        assert partial < INSTANCES, "killed in the middle of the initial sync"

        simulator.faults.clear()
        simulator.step(50)
        resumed = run_cli("sync", "--once", env=env, cwd=tmp_path, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "elsa:" in resumed.stdout and "created" in resumed.stdout
        asyncio.run(_assert_converged_without_duplicates(database_url, simulator))


async def _mirrored_count(database_url: str) -> int:
    store = Store.from_url(database_url)
    try:
        counts = await store.source_counts(DEFAULT_TENANT_ID)
    except Exception:  # the worker has not created the schema yet
        return 0
    finally:
        await store.close()
    return counts.get("elsa", {}).get("instances", 0)


async def _assert_converged_without_duplicates(database_url: str, simulator: ElsaSimulator) -> None:
    store = Store.from_url(database_url)
    try:
        await assert_mirror_equals(store, simulator)
        creates = [
            change.entity_id
            for change in await store.changes_after(0, limit=100_000)
            if change.op is ChangeOp.CREATE and change.entity is EntityKind.INSTANCE
        ]
    finally:
        await store.close()
    assert len(creates) == len(set(creates)), "no instance was created twice"
