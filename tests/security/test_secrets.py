"""ELSA credentials, push credentials and database passwords never appear in logs, errors
or responses; credentials that cannot work together are refused at start."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tamma_sync.api import create_app
from tamma_sync.models import MAX_ERROR_LENGTH
from tamma_sync.settings import Settings
from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tamma_sync.store import describe_database_error
from tests.support.process import run_cli
from tests.support.server import serve_in_thread

PASSWORD = "pw-that-must-not-leak-4711"
API_KEY = "key-that-must-not-leak-0815"
#: Seconds a refused start may take; a start that is not refused runs until killed.
REFUSAL_TIMEOUT = 20


@pytest.mark.parametrize(
    ("credentials", "userinfo"),
    [
        ({"TAMMA_SYNC_ELSA_USERNAME": "admin", "TAMMA_SYNC_ELSA_PASSWORD": PASSWORD}, ""),
        ({"TAMMA_SYNC_ELSA_API_KEY": API_KEY}, ""),
        # Credentials in the URL alone (sent as Basic auth): dropped from what is shown.
        ({}, f"someone:{PASSWORD}@"),
    ],
    ids=["login", "api-key", "url"],
)
def test_rejected_credentials_are_reported_without_the_secret(
    tmp_path: Path, credentials: dict[str, str], userinfo: str
) -> None:
    simulator = ElsaSimulator(
        SimulatorConfig(seed=2, definitions=2, instances=5, require_auth=True)
    )
    with serve_in_thread(simulator.app) as elsa_url:
        host_and_port = elsa_url.removeprefix("http://")
        env = {
            **credentials,
            "TAMMA_SYNC_DATA_DIR": str(tmp_path),
            "TAMMA_SYNC_ELSA_URL": f"http://{userinfo}{host_and_port}",
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


def test_push_url_password_is_never_shown(tmp_path: Path, keyed_url: str) -> None:
    """A push refused by the remote tamma-sync names its URL in the summary, the log and the
    traceback: always without the password (httpx would repeat it in each)."""
    simulator = ElsaSimulator(SimulatorConfig(seed=3, definitions=2, instances=5))
    host_and_port = keyed_url.removeprefix("http://")
    with serve_in_thread(simulator.app) as elsa_url:
        result = run_cli(
            "sync",
            "--once",
            "--push-url",
            f"http://pusher:{PASSWORD}@{host_and_port}",
            env={"TAMMA_SYNC_DATA_DIR": str(tmp_path), "TAMMA_SYNC_ELSA_URL": elsa_url},
            timeout=120,
        )
    output = result.stdout + result.stderr
    assert PASSWORD not in output
    assert result.returncode == 1, output[-2000:]
    assert f"FAILED: HTTPStatusError: Client error '401 Unauthorized' for url '{keyed_url}/" in (
        result.stdout
    )


def test_push_url_credentials_and_push_key_are_refused(tmp_path: Path) -> None:
    result = run_cli(
        "sync",
        "--once",
        "--push-url",
        f"http://pusher:{PASSWORD}@127.0.0.1:9",
        "--push-key",
        API_KEY,
        env={"TAMMA_SYNC_DATA_DIR": str(tmp_path), "TAMMA_SYNC_ELSA_URL": "http://127.0.0.1:9"},
        timeout=REFUSAL_TIMEOUT,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "Error: --push-url carries credentials (user:password@) and a push key is set "
        "(--push-key or TAMMA_SYNC_PUSH_KEY): give one of them\n"
    )


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        (
            {
                "TAMMA_SYNC_ELSA_URL": f"http://someone:{PASSWORD}@127.0.0.1:9",
                "TAMMA_SYNC_ELSA_API_KEY": API_KEY,
            },
            "TAMMA_SYNC_ELSA_URL carries credentials (user:password@) and "
            "TAMMA_SYNC_ELSA_API_KEY is set: give one of them",
        ),
        (
            {
                "TAMMA_SYNC_ELSA_URL": f"http://someone:{PASSWORD}@127.0.0.1:9",
                "TAMMA_SYNC_ELSA_USERNAME": "admin",
                "TAMMA_SYNC_ELSA_PASSWORD": PASSWORD,
            },
            "TAMMA_SYNC_ELSA_URL carries credentials (user:password@) and "
            "TAMMA_SYNC_ELSA_USERNAME is set: give one of them",
        ),
        (
            {
                "TAMMA_SYNC_SOURCES": json.dumps(
                    [{"id": "a", "url": f"http://x:{PASSWORD}@127.0.0.1:9", "apiKey": API_KEY}]
                )
            },
            "TAMMA_SYNC_SOURCES.0: source 'a': url carries credentials (user:password@) and "
            "apiKey is set: give one of them",
        ),
        (
            {"TAMMA_SYNC_ELSA_URL": "http://127.0.0.1:9", "TAMMA_SYNC_ELSA_API_KEY": ""},
            "TAMMA_SYNC_ELSA_API_KEY is empty: give the key, or leave it unset",
        ),
        (
            {"TAMMA_SYNC_SOURCES": '[{"id": "a", "url": "http://127.0.0.1:9", "apiKey": " "}]'},
            "TAMMA_SYNC_SOURCES.0: source 'a': apiKey is empty: give the key, or leave it unset",
        ),
        (
            # An unescaped `/` in the password: urlsplit took the rest for a path, so the
            # start log showed the whole password, and httpx quoted its start as a port.
            {"TAMMA_SYNC_ELSA_URL": f"http://someone:{PASSWORD}/x@127.0.0.1:9"},
            "TAMMA_SYNC_ELSA_URL is not a valid URL: its host or port cannot be read "
            "(percent-encode any / ? # in a password)",
        ),
    ],
    ids=[
        "url-and-key",
        "url-and-login",
        "source-url-and-key",
        "empty-key",
        "blank-source-key",
        "unescaped-slash",
    ],
)
def test_credentials_that_cannot_work_are_refused_at_start(
    tmp_path: Path, env: dict[str, str], refusal: str
) -> None:
    result = run_cli(
        "serve",
        "--port",
        "0",
        env={"TAMMA_SYNC_DATA_DIR": str(tmp_path), **env},
        timeout=REFUSAL_TIMEOUT,
    )
    assert result.returncode == 2
    assert result.stderr == f"Error: {refusal}\n"
    assert PASSWORD not in result.stdout + result.stderr


def test_settings_errors_never_repeat_the_values_given(tmp_path: Path) -> None:
    """pydantic's own message quotes the input: keys, passwords, database URLs."""
    result = run_cli(
        "migrate",
        env={
            "TAMMA_SYNC_DATA_DIR": str(tmp_path),
            "TAMMA_SYNC_DATABASE_URL": f"mysql://root:{PASSWORD}@db.example/mirror",
            "TAMMA_SYNC_SOURCES": json.dumps(
                [{"id": "a", "url": "http://127.0.0.1:9", "apiKey": API_KEY, "username": "u"}]
            ),
        },
        timeout=REFUSAL_TIMEOUT,
    )
    assert PASSWORD not in result.stderr and API_KEY not in result.stderr
    assert result.returncode == 2
    assert result.stderr == (
        "Error: TAMMA_SYNC_DATABASE_URL: unsupported database URL scheme 'mysql': use "
        "sqlite:///path.db or postgresql://user@host:port/db; TAMMA_SYNC_SOURCES.0: "
        "source 'a': username and password go together\n"
    )


def test_last_error_is_short_whatever_elsa_answers(tmp_path: Path, database_url: str) -> None:
    """An ELSA (or a proxy before it) answering junk with a huge header cannot fill the
    source's status, the summary or the log."""

    async def junk(request: Request) -> Response:
        if not request.url.path.endswith("/package/version"):
            return Response(status_code=404)  # not retried: the cycle fails at its first call
        return Response(b"<html>not json", headers={"Content-Type": "text/html; x=" + "y" * 5000})

    elsa = Starlette(routes=[Route("/{path:path}", junk, methods=["GET", "POST"])])
    with serve_in_thread(elsa) as elsa_url:
        env = {"TAMMA_SYNC_DATABASE_URL": database_url, "TAMMA_SYNC_ELSA_URL": elsa_url}
        result = run_cli("sync", "--once", env=env, timeout=120)
    assert result.returncode == 1
    (summary,) = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert "unexpected body" in summary
    assert len(summary.partition("FAILED: ")[2]) <= MAX_ERROR_LENGTH
    assert "y" * (MAX_ERROR_LENGTH + 1) not in result.stderr

    settings = Settings(database_url=database_url, data_dir=tmp_path)
    with serve_in_thread(create_app(settings)) as url:
        (source,) = httpx.get(f"{url}/api/sync/status").json()["sources"]
    assert source["lastError"].startswith("GET /package/version -> HTTP 200: unexpected body")
    assert len(source["lastError"]) <= MAX_ERROR_LENGTH


def test_a_pushed_last_error_is_cut_to_its_limit(client: httpx.Client) -> None:
    state = {"sourceId": "pushed", "lastError": "SELECT secret " * 400, "lastErrorAt": 1}
    batch = {"sourceId": "pushed", "state": state}
    assert client.post("/api/sync/batch", json=batch).status_code == 200, batch
    [source] = client.get("/api/sync/status").json()["sources"]
    assert len(source["lastError"]) == MAX_ERROR_LENGTH


async def test_a_driver_error_is_described_without_the_value(postgres_database_url: str) -> None:
    """asyncpg puts the value it could not send into its message; that value may be a
    tenant's data, and the description reaches logs, `lastError` and rejections."""
    sql_engine = create_async_engine(postgres_database_url)
    try:
        async with sql_engine.connect() as connection:
            with pytest.raises(DBAPIError) as raised:
                await connection.execute(sa.text("SELECT :n + 1"), {"n": "secret-value-xyz"})
    finally:
        await sql_engine.dispose()
    assert "secret-value-xyz" in str(raised.value)
    description = describe_database_error(raised.value)
    assert "query argument $1" in description
    assert "secret-value-xyz" not in description
