"""ELSA credentials never appear in logs, errors or responses."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tamma_sync.api import create_app
from tamma_sync.settings import Settings
from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tests.support.process import run_cli
from tests.support.server import serve_in_thread

PASSWORD = "pw-that-must-not-leak-4711"
API_KEY = "key-that-must-not-leak-0815"


@pytest.mark.parametrize(
    "credentials",
    [
        {"TAMMA_SYNC_ELSA_USERNAME": "admin", "TAMMA_SYNC_ELSA_PASSWORD": PASSWORD},
        {"TAMMA_SYNC_ELSA_API_KEY": API_KEY},
    ],
)
def test_rejected_credentials_are_reported_without_the_secret(
    tmp_path: Path, credentials: dict[str, str]
) -> None:
    simulator = ElsaSimulator(
        SimulatorConfig(seed=2, definitions=2, instances=5, require_auth=True)
    )
    with serve_in_thread(simulator.app) as elsa_url:
        host_and_port = elsa_url.removeprefix("http://")
        env = {
            **os.environ,
            **credentials,
            "TAMMA_SYNC_DATA_DIR": str(tmp_path),
            # Credentials in the URL too: they must be dropped from what is shown.
            "TAMMA_SYNC_ELSA_URL": f"http://someone:{PASSWORD}@{host_and_port}",
        }
        result = run_cli("sync", "--once", env=env, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "FAILED" in output
    assert "401" in output or "refused the login" in output
    assert PASSWORD not in output and API_KEY not in output

    settings = Settings(data_dir=tmp_path)
    with serve_in_thread(create_app(settings)) as url:
        status = httpx.get(f"{url}/api/sync/status").text
        engines = httpx.get(f"{url}/api/engines").text
    assert '"phase":"error"' in status
    for text in (status, engines):
        assert PASSWORD not in text and API_KEY not in text
        assert f"http://{host_and_port}" in text
