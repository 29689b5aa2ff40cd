"""A database without room to write: the API says so, and `/readyz` says not ready."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from tamma_sync.api import create_app
from tamma_sync.models import DEFAULT_TENANT_ID, InstanceWrite
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tamma_sync.store.errors import is_disk_full
from tests.support.server import serve_in_thread

DISK_FULL = "Database disk is full: writes are refused until space is freed"
#: What PostgreSQL raises when it cannot extend a table's file: SQLSTATE 53100, its message.
NO_SPACE = ("disk_full", 'could not extend file "base/1/2": No space left on device')
#: A definition that needs new database pages: far more than an SQLite file keeps free.
LARGE = {"id": "large", "name": "Large", "description": "x" * 1_000_000}


@contextmanager
def _serving(database_url: str, tmp_path: Path) -> Iterator[tuple[httpx.Client, Store]]:
    app = create_app(Settings(database_url=database_url, data_dir=tmp_path))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield http, app.state.store


def _writes_refused_until_freed(
    http: httpx.Client, fill: Callable[[], None], free: Callable[[], None]
) -> None:
    """With the database full, a write gets 507 and `/readyz` 503 with the reason, while
    reads go on; once there is room, the next write succeeds and `/readyz` is ready."""
    assert http.post("/api/workflows/definitions", json={"id": "wf", "name": "F"}).is_success
    assert http.get("/readyz").status_code == 200
    fill()
    refused = http.post("/api/workflows/definitions", json=LARGE)
    assert (refused.status_code, refused.json()) == (507, {"error": DISK_FULL})
    ready = http.get("/readyz")
    body = ready.json()
    assert (ready.status_code, body["status"], body["database"], body["error"]) == (
        503,
        "unavailable",
        "full",
        DISK_FULL,
    )
    assert [d["id"] for d in http.get("/api/workflows/definitions").json()] == ["wf"]

    free()
    assert http.get("/readyz").status_code == 503, "until a write succeeds"
    assert http.post("/api/workflows/definitions", json=LARGE).status_code == 201
    assert http.get("/readyz").json()["status"] == "ready"


def test_sqlite_full_is_507_and_not_ready_until_a_write_succeeds(
    sqlite_database_url: str, tmp_path: Path
) -> None:
    """`PRAGMA max_page_count` caps how many pages the database may grow to; a write that
    needs a page beyond it fails with SQLITE_FULL, "database or disk is full", the very
    error a full disk gives. The cap is a setting of each connection, so it is set on the
    server's own, every time its pool hands one out (asking for fewer pages than the file
    has sets the cap at its current size)."""
    with closing(sqlite3.connect(":memory:")) as fresh:
        [(uncapped,)] = fresh.execute("PRAGMA max_page_count").fetchall()
    cap = {"pages": uncapped}

    def set_cap(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA max_page_count = {cap['pages']}")
        cursor.close()

    with _serving(sqlite_database_url, tmp_path) as (http, store):
        event.listen(store.sql_engine.sync_engine.pool, "checkout", set_cap)
        _writes_refused_until_freed(
            http,
            fill=lambda: cap.update(pages=1),
            free=lambda: cap.update(pages=uncapped),
        )


async def test_sqlite_full_on_the_loop_threads_single_row_write(sqlite_database_url: str) -> None:
    """A single instance's write runs on the store's own SQLite connection of the event
    loop's thread (`LoopThreadWrites`), not the pool's: there too a write without room is
    refused as disk full, leaves nothing behind and no transaction open on that
    connection, and the next write succeeds once there is room."""
    store = Store.from_url(sqlite_database_url)
    big = InstanceWrite(id="big", definition_id="wf", variables={"x": "y" * 200_000})
    try:
        await store.create_instance(DEFAULT_TENANT_ID, InstanceWrite(id="i1", definition_id="wf"))
        loop_thread = store._db._loop_writes  # the connection a single row's write runs on
        assert loop_thread is not None and loop_thread._conn is not None, "opened by the write"
        loop_thread._conn.execute("PRAGMA max_page_count = 1")
        seq = await store.last_seq()
        with pytest.raises(OperationalError, match="database or disk is full") as refused:
            await store.create_instance(DEFAULT_TENANT_ID, big)
        assert is_disk_full(refused.value) and store.disk_full
        assert not loop_thread._conn.in_transaction
        assert await store.last_seq() == seq
        assert await store.get_instance(DEFAULT_TENANT_ID, "big") is None

        loop_thread._conn.execute("PRAGMA max_page_count = 1073741823")
        await store.create_instance(DEFAULT_TENANT_ID, big)
        assert not store.disk_full
        assert await store.get_instance(DEFAULT_TENANT_ID, "big") is not None
        assert await store.last_seq() == seq + 1
    finally:
        await store.close()


def _run(database_url: str, statement: str) -> None:
    """Run one statement on the database, on a connection of its own."""

    async def execute() -> None:
        store = Store.from_url(database_url)
        try:
            async with store.sql_engine.begin() as conn:
                await conn.execute(text(statement))
        finally:
            await store.close()

    asyncio.run(execute())


def _fail_definition_writes(
    database_url: str, errcode: str, message: str, table: str = "definitions"
) -> None:
    """A trigger that fails every write of a definition (or of `table`'s rows) with this
    SQLSTATE and message."""
    _run(
        database_url,
        f"""
        CREATE FUNCTION no_room() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            RAISE EXCEPTION '{message}' USING ERRCODE = '{errcode}';
        END $$
        """,
    )
    _run(
        database_url,
        f"CREATE TRIGGER no_room BEFORE INSERT OR UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION no_room()",
    )


def test_postgresql_disk_full_is_507_and_not_ready_until_a_write_succeeds(
    postgres_database_url: str, tmp_path: Path
) -> None:
    """PostgreSQL cannot run out of disk here without reconfiguring the shared server, so a
    trigger in this test's own database raises what PostgreSQL raises when it cannot extend
    a table's file (SQLSTATE 53100, disk_full): the error takes the real path, from the
    server through asyncpg and SQLAlchemy to the API."""
    with _serving(postgres_database_url, tmp_path) as (http, _):
        _writes_refused_until_freed(
            http,
            fill=lambda: _fail_definition_writes(postgres_database_url, *NO_SPACE),
            free=lambda: _run(postgres_database_url, "DROP TRIGGER no_room ON definitions"),
        )


def test_postgresql_disk_full_on_a_single_instance_write_is_507(
    postgres_database_url: str, tmp_path: Path
) -> None:
    """A single instance's write runs on the connection the store holds out of the pool,
    its errors translated there: a full disk is told the same way."""
    with _serving(postgres_database_url, tmp_path) as (http, _):
        instance = {"id": "i1", "definitionId": "wf", "status": "Running"}
        _fail_definition_writes(postgres_database_url, *NO_SPACE, table="instances")
        refused = http.post("/api/workflows/instances", json=instance)
        assert (refused.status_code, refused.json()) == (507, {"error": DISK_FULL})
        assert http.get("/readyz").status_code == 503
        _run(postgres_database_url, "DROP TRIGGER no_room ON instances")
        assert http.post("/api/workflows/instances", json=instance).status_code == 201
        assert http.get("/readyz").json()["status"] == "ready"


def test_postgresql_short_of_other_resources_is_unavailable_for_a_while(
    postgres_database_url: str, tmp_path: Path
) -> None:
    """The rest of SQLSTATE class 53, insufficient resources (here out of memory), passes
    like an outage: 503 and a retry hint, and no claim about the disk."""
    with _serving(postgres_database_url, tmp_path) as (http, _):
        _fail_definition_writes(postgres_database_url, "out_of_memory", "out of memory")
        refused = http.post("/api/workflows/definitions", json=LARGE)
        assert refused.status_code == 503 and "retry-after" in refused.headers
        assert refused.json() == {"error": "Database unavailable, try again shortly"}
        assert http.get("/readyz").status_code == 200


def test_postgresql_disk_full_on_a_bulk_write_is_507(
    postgres_database_url: str, tmp_path: Path
) -> None:
    """A batch's change rows go to PostgreSQL by COPY, on the asyncpg connection itself,
    its errors translated apart: a full disk is told the same way, and nothing of the
    batch is written."""
    batch = {
        "sourceId": "elsa",
        "instances": [
            {"id": f"i{n}", "definitionId": "wf", "status": "Running", "updatedAt": 5}
            for n in range(40)
        ],
    }
    with _serving(postgres_database_url, tmp_path) as (http, _):
        _fail_definition_writes(postgres_database_url, *NO_SPACE, table="changes")
        refused = http.post("/api/sync/batch", json=batch)
        assert (refused.status_code, refused.json()) == (507, {"error": DISK_FULL})
        assert http.get("/api/workflows/instances/i0").status_code == 404
        _run(postgres_database_url, "DROP TRIGGER no_room ON changes")
        written = http.post("/api/sync/batch", json=batch)
        assert (written.status_code, written.json()["created"]) == (200, 40)
        assert http.get("/readyz").json()["status"] == "ready"
