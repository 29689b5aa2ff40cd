"""Safe defaults: open on loopback only; on a network interface, keys or --insecure."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.process import free_port, run_cli, running_server


def test_network_interface_without_keys_refuses_to_start(tmp_path: Path) -> None:
    result = run_cli(
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        env={"TAMMA_SYNC_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in result.stderr
    assert "--insecure" in result.stderr


def test_insecure_serves_openly(tmp_path: Path) -> None:
    env = {"TAMMA_SYNC_DATA_DIR": str(tmp_path)}
    with running_server(env, tmp_path, "--host", "0.0.0.0", "--insecure") as (url, _, _):
        assert httpx.get(f"{url}/api/workflows/instances").status_code == 200


def test_with_a_key_it_serves_and_requires_it_without_logging_it(tmp_path: Path) -> None:
    env = {"TAMMA_SYNC_DATA_DIR": str(tmp_path)}
    created = run_cli(
        "keys", "create", "--tenant", "acme", "--scopes", "workflows:view", env=env, check=True
    )
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("tsk_")
    with running_server(env, tmp_path, "--host", "0.0.0.0") as (url, _, log):
        assert httpx.get(f"{url}/api/workflows/instances").status_code == 401
        authorized = httpx.get(
            f"{url}/api/workflows/instances", headers={"Authorization": f"Bearer {key}"}
        )
        assert authorized.status_code == 200
        written = log.read_text()
    assert "Application startup complete" in written
    assert key not in written and key.removeprefix("tsk_") not in written
    listed = run_cli("keys", "list", env=env, check=True)
    assert "tenant=acme" in listed.stdout
    assert key not in listed.stdout, "keys are stored hashed and never shown again"
