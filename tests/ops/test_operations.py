"""Operating the server: graceful SIGTERM, metrics, JSON logs, readiness."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tamma_sync.models import DEFAULT_TENANT_ID, SyncPhase
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tamma_sync.store import Store
from tests.support.process import run_cli, running_server
from tests.support.server import serve_in_thread
from tests.support.sse import open_stream


async def test_sigterm_ends_streams_finishes_the_sync_batch_and_exits_0(
    database_url: str, tmp_path: Path
) -> None:
    simulator = ElsaSimulator(SimulatorConfig(seed=4, definitions=4, instances=3_000))
    with serve_in_thread(simulator.app) as elsa_url:
        env = {
            "TAMMA_SYNC_DATABASE_URL": database_url,
            "TAMMA_SYNC_ELSA_URL": elsa_url,
            "TAMMA_SYNC_ELSA_API_KEY": ADMIN_API_KEY,
            "TAMMA_SYNC_SYNC_PAGE_SIZE": "100",
        }
        with running_server(env, tmp_path) as (url, process, _):
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                async with open_stream(http, "/api/events") as stream:
                    await stream.next_frame()
                    for _ in range(200):  # until the initial sync has committed a batch
                        listed = await http.get("/api/workflows/instances?pageSize=1")
                        if listed.json()["total"]:
                            break
                        await asyncio.sleep(0.05)
                    started = time.monotonic()
                    process.send_signal(signal.SIGTERM)
                    frames = await stream.events_until_closed(within=15)
                exit_code = await asyncio.to_thread(process.wait, 30)
                took = time.monotonic() - started
    assert frames and frames[-1].retry is not None, "streams end with a retry hint"
    assert exit_code == 0
    assert took < 15
    store = Store.from_url(database_url)
    try:
        state = await store.source_state(DEFAULT_TENANT_ID, "elsa")
        counts = await store.source_counts(DEFAULT_TENANT_ID)
    finally:
        await store.close()
    assert state is not None and state.phase is SyncPhase.IDLE, "the cycle ended cleanly"
    assert counts["elsa"]["instances"] > 0


async def test_metrics_report_requests_sync_and_subscribers(
    database_url: str, tmp_path: Path
) -> None:
    simulator = ElsaSimulator(SimulatorConfig(seed=4, definitions=3, instances=50))
    with serve_in_thread(simulator.app) as elsa_url:
        env = {
            "TAMMA_SYNC_DATABASE_URL": database_url,
            "TAMMA_SYNC_ELSA_URL": elsa_url,
            "TAMMA_SYNC_POLL_INTERVAL": "0.2",
        }
        with running_server(env, tmp_path) as (url, _, _):
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                await http.get("/api/workflows/instances/nope")
                async with open_stream(http, "/api/events") as stream:
                    await stream.next_frame()
                    for _ in range(100):
                        metrics = (await http.get("/metrics")).text
                        if 'tamma_sync_sync_cycles_total{outcome="ok",source="elsa"}' in metrics:
                            break
                        await asyncio.sleep(0.1)
                ready = (await http.get("/readyz")).json()
    lines = set(metrics.splitlines())
    route = "/api/workflows/instances/{instance_id}"
    labels = f'method="GET",route="{route}",status="404"'
    assert f"tamma_sync_http_requests_total{{{labels}}} 1.0" in lines
    assert "tamma_sync_sse_subscribers 1.0" in lines
    assert any(
        line.startswith('tamma_sync_sync_items_total{outcome="created",source="elsa"}')
        for line in lines
    )
    assert 'tamma_sync_sync_leader{source="elsa"} 1.0' in lines
    assert ready["sync"] == {"elsa": "leader"}


@pytest.mark.parametrize(("access_log", "logged"), [(None, True), ("false", False)])
def test_the_access_log_is_on_unless_turned_off(
    tmp_path: Path, access_log: str | None, logged: bool
) -> None:
    env = {"TAMMA_SYNC_DATA_DIR": str(tmp_path)}
    if access_log is not None:
        env["TAMMA_SYNC_ACCESS_LOG"] = access_log
    with running_server(env, tmp_path, stdout=subprocess.PIPE) as (url, process, log):
        assert httpx.get(f"{url}/api/workflows/instances?pageSize=7").status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stdout is not None
        access = process.stdout.read().decode()
    assert ('"GET /api/workflows/instances?pageSize=7 HTTP/1.1" 200' in access) is logged
    if logged:  # uvicorn's own line, word for word: log parsers rely on it
        request = re.escape('"GET /api/workflows/instances?pageSize=7 HTTP/1.1" 200 OK')
        line = rf"^INFO:     127\.0\.0\.1:\d+ - {request}$"
        assert re.search(line, access, re.MULTILINE), access
    assert "Application startup complete" in log.read_text(), "the rest of the log stays"


def test_json_logs(tmp_path: Path) -> None:
    result = run_cli(
        "migrate",
        env={"TAMMA_SYNC_DATA_DIR": str(tmp_path), "TAMMA_SYNC_LOG_FORMAT": "json"},
        check=True,
    )
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert entries
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
