"""Start-up mistakes end in one line saying what is wrong, not in a traceback."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tamma_sync.settings import normalize_database_url
from tests.conftest import POSTGRES_URL_ENV, postgres_admin_url
from tests.support.process import CLI, free_port, run_cli

#: sysfs refuses files even to root, as a read-only mount does: an existing directory no
#: file can be made in, and one that cannot be made.
UNWRITABLE = ["/sys/kernel", "/sys/kernel/tamma-sync"]


@pytest.mark.parametrize("data_dir", UNWRITABLE)
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"]])
def test_an_unwritable_data_directory_is_one_line(data_dir: str, command: list[str]) -> None:
    result = run_cli(*command, env={"TAMMA_SYNC_DATA_DIR": data_dir}, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert data_dir in lines[0]
    assert "TAMMA_SYNC_DATA_DIR" in lines[0]
    assert "Traceback" not in result.stderr


#: What each command needs besides its database to get as far as opening it.
DATABASE_COMMANDS = [["serve", "--port", "0"], ["migrate"], ["sync", "--once"], ["keys", "list"]]


def _reason_lines(stderr: str, needle: str) -> list[str]:
    """The lines saying `needle`: `serve` logs through uvicorn, which adds its own
    start-up lines around the reason (and "Application startup failed")."""
    return [line for line in stderr.splitlines() if needle in line]


@pytest.mark.parametrize("command", DATABASE_COMMANDS)
def test_a_missing_postgres_database_is_one_line(command: list[str], tmp_path: Path) -> None:
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip(f"needs {POSTGRES_URL_ENV}")
    server = make_url(normalize_database_url(admin_url))
    name = f"tamma_missing_{uuid.uuid4().hex[:12]}"  # never created
    url = server.set(database=name, password="hunter2").render_as_string(hide_password=False)
    env = {"TAMMA_SYNC_DATABASE_URL": url, "TAMMA_SYNC_ELSA_URL": "http://127.0.0.1:9"}
    result = run_cli(*command, env=env, cwd=tmp_path, timeout=30)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
    lines = _reason_lines(result.stderr, "does not exist")
    assert len(lines) == 1, result.stderr
    where = f"{server.host}:{server.port or 5432}"
    assert f'PostgreSQL database "{name}" does not exist on {where}' in lines[0]
    assert f"createdb -h {server.host} -p {server.port or 5432}" in lines[0]
    assert lines[0].endswith(f" {name}")


@pytest.mark.parametrize("command", DATABASE_COMMANDS)
def test_postgres_not_listening_is_one_line(command: list[str], tmp_path: Path) -> None:
    port = free_port()  # nobody listens on it
    env = {
        "TAMMA_SYNC_DATABASE_URL": f"postgresql://tamma:hunter2@127.0.0.1:{port}/tamma",
        "TAMMA_SYNC_ELSA_URL": "http://127.0.0.1:9",
    }
    result = run_cli(*command, env=env, cwd=tmp_path, timeout=30)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
    lines = _reason_lines(result.stderr, "cannot connect to PostgreSQL")
    assert len(lines) == 1, result.stderr
    assert f"on 127.0.0.1:{port}: connection refused" in lines[0]
    assert "start PostgreSQL" in lines[0] and "TAMMA_SYNC_DATABASE_URL" in lines[0]


@pytest.mark.parametrize("url", ["elsa:5000", "localhost:5000", "//elsa:5000"])
def test_an_elsa_url_without_scheme_is_refused_at_once(url: str, tmp_path: Path) -> None:
    result = run_cli("sync", "--once", env={"TAMMA_SYNC_ELSA_URL": url}, cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TAMMA_SYNC_ELSA_URL" in lines[0] and "http://elsa:5000" in lines[0]


def test_the_url_the_simulator_prints_works_as_the_elsa_url(tmp_path: Path) -> None:
    """The simulator names its API (…/elsa/api); the client adds /elsa/api to ELSA's root."""
    port = free_port()
    simulator = subprocess.Popen(
        [*CLI, "simulate-elsa", "--port", str(port), "--instances", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        printed = re.search(r"on (http://\S+) \(API key (\S+)\)", simulator.stdout.readline())
        assert printed is not None
        wait_until_listening(port)
        env = {"TAMMA_SYNC_ELSA_URL": printed[1], "TAMMA_SYNC_ELSA_API_KEY": printed[2]}
        first = run_cli("sync", "--once", env=env, cwd=tmp_path, timeout=60)
        assert first.returncode == 0, first.stderr[-2000:]
        assert "FAILED" not in first.stdout and "30/30" in first.stdout
        # A second run reads only what changed since the first; its bar still ends full.
        again = run_cli("sync", "--once", env=env, cwd=tmp_path, timeout=60)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "30/30" in again.stdout, again.stdout
    finally:
        simulator.kill()
        simulator.wait(timeout=10)
        if simulator.stdout is not None:
            simulator.stdout.close()


def test_help_shows_no_value_for_flags() -> None:
    for command in ([], ["serve"], ["demo"]):
        result = run_cli(*command, "--help", timeout=30)
        assert result.returncode == 0, result.stderr
        assert "<bool>" not in result.stdout
    demo = run_cli("demo", "--help", env={"COLUMNS": "200"}, timeout=30).stdout
    elsa_port = next(line for line in demo.splitlines() if "--elsa-port" in line)
    assert "simulated ELSA" in elsa_port


def wait_until_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


def test_a_retry_says_what_failed_and_why(tmp_path: Path) -> None:
    elsa_url = f"http://127.0.0.1:{free_port()}"  # nobody listens on it
    result = run_cli(
        "sync", "--once", env={"TAMMA_SYNC_ELSA_URL": elsa_url}, cwd=tmp_path, timeout=60
    )
    retries = [line for line in result.stderr.splitlines() if "stamina" in line]
    assert retries, result.stderr
    assert "retry 1 in" in retries[0]
    assert "ElsaUnavailable: GET /" in retries[0] and "connection failed" in retries[0]
