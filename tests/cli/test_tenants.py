"""Tenants as an operator meets them: the sync and `keys create` agree on `default`, and a
key made for a tenant nothing writes into says so."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from tamma_sync.models import EngineReport
from tamma_sync.settings import SQLITE_FILE_NAME
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tamma_sync.store import Store
from tests.support.process import run_cli, running_server
from tests.support.server import serve_in_thread

WARNING = (
    "warning: tenant 'acme' has no data and no ELSA source; the sync writes into 'default' "
    'unless a source sets "tenantId" in TAMMA_SYNC_SOURCES'
)


def _create_key(env: dict[str, str], *args: str) -> tuple[str, list[str]]:
    """`keys create` with a read-only key's scopes: the key, and the lines on stderr."""
    created = run_cli(
        "keys", "create", "--scopes", "workflows:view,dashboard:view", *args, env=env, check=True
    )
    return created.stdout.splitlines()[-1], created.stderr.splitlines()


def test_a_key_made_without_tenant_reads_what_the_sync_wrote(
    database_url: str, tmp_path: Path
) -> None:
    simulator = ElsaSimulator(SimulatorConfig(seed=5, definitions=3, instances=20))
    env = {"TAMMA_SYNC_DATABASE_URL": database_url}
    with serve_in_thread(simulator.app) as elsa_url:
        synced = run_cli(
            "sync",
            "--once",
            env={**env, "TAMMA_SYNC_ELSA_URL": elsa_url, "TAMMA_SYNC_ELSA_API_KEY": ADMIN_API_KEY},
            cwd=tmp_path,
            timeout=120,
        )
    assert synced.returncode == 0, synced.stderr[-2000:]

    key, said = _create_key(env)
    assert not [line for line in said if line.startswith("warning")]
    other_key, _ = _create_key(env, "--tenant", "acme")
    with running_server(env, tmp_path) as (url, _, _):
        mine = {"Authorization": f"Bearer {key}"}
        listed = httpx.get(f"{url}/api/workflows/instances", headers=mine, timeout=10).json()
        assert listed["total"] == 20
        status = httpx.get(f"{url}/api/sync/status", headers=mine, timeout=10).json()
        assert [(s["sourceId"], s["tenantId"]) for s in status["sources"]] == [("elsa", "default")]
        theirs = {"Authorization": f"Bearer {other_key}"}
        empty = httpx.get(f"{url}/api/workflows/instances", headers=theirs, timeout=10).json()
        assert empty["total"] == 0, "another tenant's key sees none of it"


def test_a_key_for_a_tenant_nothing_writes_into_warns(tmp_path: Path) -> None:
    """Warned once, on stderr, and made all the same; not once a source syncs into the
    tenant, nor once the tenant holds data."""
    env = {"TAMMA_SYNC_DATA_DIR": str(tmp_path)}
    key, said = _create_key(env, "--tenant", "acme")
    assert key.startswith("tsk_")
    assert [line for line in said if line.startswith("warning")] == [WARNING]

    source = {"id": "acme-elsa", "url": "http://127.0.0.1:9", "tenantId": "acme"}
    _, said = _create_key({**env, "TAMMA_SYNC_SOURCES": json.dumps([source])}, "--tenant", "acme")
    assert not [line for line in said if line.startswith("warning")]

    asyncio.run(_register_engine(f"sqlite+aiosqlite:///{tmp_path / SQLITE_FILE_NAME}", "beta"))
    _, said = _create_key(env, "--tenant", "beta")
    assert not [line for line in said if line.startswith("warning")]


async def _register_engine(database_url: str, tenant_id: str) -> None:
    store = Store.from_url(database_url)
    try:
        await store.put_engine(tenant_id, "engine", EngineReport(state="IDLE"))
    finally:
        await store.close()
