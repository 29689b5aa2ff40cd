"""Data survives the server process: written, killed with SIGKILL, started again."""

from __future__ import annotations

from pathlib import Path

import httpx

from tamma_sync.store.migrations import head_revision
from tests.support.http import TLS
from tests.support.process import run_cli, running_server


def test_data_survives_a_killed_server(database_url: str, tmp_path: Path) -> None:
    # The plain URL forms users write (sqlite:///…, postgresql://…).
    plain_url = database_url.replace("+aiosqlite", "").replace("+asyncpg", "")
    env = {"TAMMA_SYNC_DATABASE_URL": plain_url}
    with running_server(env, tmp_path) as (url, _, _):
        assert (
            httpx.post(
                f"{url}/api/workflows/definitions", json={"id": "wf", "name": "Flow"}
            ).status_code
            == 201
        )
        for n in range(20):
            response = httpx.post(
                f"{url}/api/workflows/instances",
                verify=TLS,
                json={
                    "id": f"i{n}",
                    "definitionId": "wf",
                    "status": "running",
                    # Listed by createdAt then id: two POSTs may share a millisecond.
                    "createdAt": 1_000 + n,
                    "variables": {"n": n},
                },
            )
            assert response.status_code == 201
        httpx.put(f"{url}/api/workflows/instances/i3", json={"status": "Finished"})
    # The context manager SIGKILLed the process: no clean shutdown.
    with running_server(env, tmp_path) as (url, _, _):
        listed = httpx.get(f"{url}/api/workflows/instances", params={"pageSize": 100}).json()
        assert listed["total"] == 20
        assert [i["variables"]["n"] for i in listed["data"]] == list(range(20))
        assert httpx.get(f"{url}/api/workflows/instances/i3").json()["subStatus"] == "Finished"
        assert [d["id"] for d in httpx.get(f"{url}/api/workflows/definitions").json()] == ["wf"]


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    with running_server({}, tmp_path) as (url, _, _):
        httpx.post(f"{url}/api/workflows/instances", json={"id": "i1", "definitionId": "wf"})
    assert (tmp_path / ".tamma-sync" / "tamma-sync.db").exists()
    data_dir = tmp_path / "elsewhere"
    with running_server({"TAMMA_SYNC_DATA_DIR": str(data_dir)}, tmp_path) as (url, _, _):
        assert httpx.get(f"{url}/api/workflows/instances").json()["total"] == 0
    assert (data_dir / "tamma-sync.db").exists()


def test_migrate_command_accepts_plain_urls(tmp_path: Path) -> None:
    database = tmp_path / "plain.db"
    result = run_cli("migrate", "--database-url", f"sqlite:///{database}")
    assert result.returncode == 0, result.stderr
    assert f"database schema at revision {head_revision()}" in result.stdout
    assert database.exists()


def test_unsupported_database_url_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("migrate", "--database-url", "mysql://root@localhost/db")
    assert result.returncode != 0
    assert "unsupported database URL scheme" in result.stderr
