"""Shared fixtures: a fresh database on each dialect, a migrated store, a live server.

PostgreSQL tests run when `TAMMA_SYNC_TEST_POSTGRES_URL` points at a server whose user may
create databases (`.ci/run` sets it); each test gets a database of its own. Without the
variable they are skipped, so a machine without PostgreSQL can still run the rest. With it
set, an unreachable server is an error, never a silent skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tamma_sync.api import create_app
from tamma_sync.settings import Settings, normalize_database_url
from tamma_sync.store import Store
from tests.support.server import serve_in_thread
from tests.support.throwaway_postgres import PostgresUnavailable, ThrowawayPostgres

POSTGRES_URL_ENV = "TAMMA_SYNC_TEST_POSTGRES_URL"
DIALECTS = ["sqlite", "postgresql"]


def postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_URL_ENV) or None


def _asyncpg_dsn(url: str) -> str:
    return (
        make_url(normalize_database_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


async def _admin(statement: str) -> None:
    admin_url = postgres_admin_url()
    assert admin_url is not None
    connection = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def postgres_database_url() -> Iterator[str]:
    """An empty PostgreSQL database made for this test (async driver URL)."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_URL_ENV}")
    name = f"tamma_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_database_url(admin_url)).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL cluster of this module's own, for tests that stop or restart the
    database: the machine's shared server is never touched. Without the binaries it is
    skipped, unless PostgreSQL tests are required (`TAMMA_SYNC_TEST_POSTGRES_URL` set):
    then the test fails."""
    try:
        cluster = ThrowawayPostgres.create()
    except PostgresUnavailable as error:
        if postgres_admin_url() is not None:
            pytest.fail(f"a throwaway PostgreSQL cluster could not be started: {error}")
        pytest.skip(f"a throwaway PostgreSQL cluster could not be started: {error}")
    with cluster:
        yield cluster


@pytest.fixture
def throwaway_database_url(throwaway_postgres: ThrowawayPostgres) -> str:
    """An empty database (async driver URL) in the throwaway cluster, started again if an
    earlier test left it stopped."""
    if not throwaway_postgres.is_running():
        throwaway_postgres.start()
    return normalize_database_url(throwaway_postgres.create_database())


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'tamma-sync.db'}"


@pytest.fixture(params=DIALECTS)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database, once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_database_url" if request.param == "sqlite" else "postgres_database_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated store on each dialect."""
    opened = Store.from_url(database_url)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path)


@pytest.fixture
def server_url(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a loopback port, on each dialect."""
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
def client(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=10) as http:
        yield http
