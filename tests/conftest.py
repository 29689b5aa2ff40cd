"""Shared fixtures: a fresh database on each dialect, a migrated store, a live server.

PostgreSQL tests run when `TAMMA_SYNC_TEST_POSTGRES_URL` points at a server whose user may
create databases (`.ci/run` sets it); each test gets a database of its own. Without the
variable they are skipped, so a machine without PostgreSQL can still run the rest. With it
set, an unreachable server is an error, never a silent skip.

A test's database is a copy of one migrated once per test process (a file copy on SQLite,
`CREATE DATABASE … TEMPLATE` on PostgreSQL): a fifth of the cost of migrating each anew.
On PostgreSQL a copy a test used is emptied back to the template for the next one, which
costs a fiftieth of a new copy (tests/support/postgres_databases.py). Tests of migrations
themselves ask for `empty_database_url`.

The suite runs in parallel (pytest-xdist, `scripts/test` passes `-n auto`): twice as many
workers as cores, since most tests spend their time waiting on servers, not computing.
Everything a test starts is its own (databases, ports, directories), so workers never meet;
a module whose tests share one costly fixture marks itself `xdist_group` to stay on one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tamma_sync.api import create_app
from tamma_sync.settings import Settings, normalize_database_url
from tamma_sync.store import Store
from tests.support.http import TLS
from tests.support.postgres_databases import PostgresDatabases
from tests.support.server import serve_in_thread
from tests.support.throwaway_postgres import PostgresUnavailable, ThrowawayPostgres

POSTGRES_URL_ENV = "TAMMA_SYNC_TEST_POSTGRES_URL"
DIALECTS = ["sqlite", "postgresql"]
T = TypeVar("T")


def postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_URL_ENV) or None


def _postgres_url(database: str | None = None) -> str:
    """The test server's URL for the async driver, naming `database` if given."""
    admin_url = postgres_admin_url()
    assert admin_url is not None
    url = make_url(normalize_database_url(admin_url))
    return url.set(database=database or url.database).render_as_string(hide_password=False)


def _asyncpg_dsn(url: str) -> str:
    return (
        make_url(normalize_database_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coroutine)` on a thread of its own, so that it works where this thread
    runs an event loop already (Playwright's sync API keeps one on it for a module's tests)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


async def _admin(statement: str) -> None:
    admin_url = postgres_admin_url()
    assert admin_url is not None
    connection = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers per core (at most 8), as most tests wait rather than compute."""
    return min(8, 2 * (os.cpu_count() or 1))


@contextmanager
def new_postgres_database(icu_locale: str | None = None) -> Iterator[str]:
    """An empty PostgreSQL database of its own (async driver URL), dropped at the end;
    ordering text by `icu_locale` if given, else by the server's default."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_URL_ENV}")
    name = f"tamma_test_{uuid.uuid4().hex[:12]}"
    locale = f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
    run_async(_admin(f'CREATE DATABASE "{name}"' + (locale if icu_locale else "")))
    try:
        yield _postgres_url(name)
    finally:
        run_async(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate(url: str) -> None:
    store = Store.from_url(url)
    try:
        await store.migrate()
    finally:
        await store.close()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """The name of a PostgreSQL database migrated to head, once per test process."""
    with new_postgres_database() as url:
        run_async(_migrate(url))
        name = make_url(url).database
        assert name is not None
        yield name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, once per test process."""
    path = tmp_path_factory.mktemp("template") / "tamma-sync.db"
    run_async(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_databases(postgres_template: str) -> Iterator[PostgresDatabases]:
    """This test process's copies of the template, each reused once it is one again."""
    databases = PostgresDatabases(
        postgres_template,
        admin=lambda statement: run_async(_admin(statement)),
        dsn_for=lambda name: _asyncpg_dsn(_postgres_url(name)),
        run_async=run_async,
    )
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def postgres_database_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """A PostgreSQL database of this test's own, migrated to head (async driver URL)."""
    with postgres_databases.lease() as name:
        yield _postgres_url(name)


@pytest.fixture
def postgres_en_us_database_url() -> Iterator[str]:
    """A PostgreSQL database migrated to head whose collation orders text as people read
    it (ICU's en-US: "a" < "B"), as production databases often do; the test server's
    may order it by bytes, which would hide what such a collation changes."""
    with new_postgres_database(icu_locale="en-US") as url:
        run_async(_migrate(url))
        yield url


@pytest.fixture
def empty_postgres_database_url() -> Iterator[str]:
    """An empty PostgreSQL database made for this test (async driver URL)."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL cluster of this test process's own, for tests that stop or restart the
    database: the machine's shared server is never touched. Tests using it are marked
    `xdist_group("throwaway-postgres")`, so that one worker starts one. Without the binaries
    it is skipped, unless PostgreSQL tests are required (`TAMMA_SYNC_TEST_POSTGRES_URL`
    set): then the test fails."""
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
def sqlite_database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A SQLite database of this test's own, migrated to head."""
    shutil.copyfile(sqlite_template, tmp_path / "tamma-sync.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'tamma-sync.db'}"


@pytest.fixture
def empty_sqlite_database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'tamma-sync.db'}"


#: The database each `database_url` parameter names: the two dialects, and one more a test
#: may ask for with `pytest.mark.parametrize("database_url", […], indirect=True)`.
DATABASE_FIXTURES = {
    "sqlite": "sqlite_database_url",
    "postgresql": "postgres_database_url",
    "postgresql-en-US": "postgres_en_us_database_url",
}


@pytest.fixture(params=DIALECTS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A database migrated to head, once on SQLite and once on PostgreSQL."""
    url: str = request.getfixturevalue(DATABASE_FIXTURES[request.param])
    return url


@pytest.fixture(params=DIALECTS)
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """An empty database (no schema), once on SQLite and once on PostgreSQL."""
    fixture = "empty_sqlite_database_url"
    if request.param == "postgresql":
        fixture = "empty_postgres_database_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated store on each dialect."""
    opened = Store.from_url(database_url)
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
    with httpx.Client(base_url=server_url, timeout=10, verify=TLS) as http:
        yield http
