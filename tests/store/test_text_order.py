"""Lists ordered by a text key come in one order on both databases: byte order, whatever
the collation of a PostgreSQL database (production ones often order text as en-US does,
"a" before "B"; the test server's orders by bytes, which would hide it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tamma_sync.models import (
    DEFAULT_TENANT_ID,
    DefinitionWrite,
    EngineReport,
    SourceState,
    SyncBatch,
)
from tamma_sync.store import Store

KEYS = ["b", "B", "a", "_x", "a-b", "ab", "Zeta", "é"]
#: Code point order, which is UTF-8's byte order (and SQLite's).
IN_BYTE_ORDER = ["B", "Zeta", "_x", "a", "a-b", "ab", "b", "é"]


@pytest.fixture(params=["sqlite", "postgresql-en-US"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    url = request.getfixturevalue(
        "sqlite_database_url" if request.param == "sqlite" else "postgres_en_us_database_url"
    )
    opened = Store.from_url(url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_definitions_engines_and_sources_are_listed_in_byte_order(store: Store) -> None:
    tenant = DEFAULT_TENANT_ID
    await store.upsert_definitions(tenant, [DefinitionWrite(id=key, name=key) for key in KEYS])
    for key in KEYS:
        await store.put_engine(tenant, key, EngineReport(state="IDLE"))
        batch = SyncBatch(source_id=key, state=SourceState(source_id=key))
        await store.apply_sync_batch(tenant, batch)

    assert [d.id for d in await store.list_definitions(tenant)] == IN_BYTE_ORDER
    assert [key for key, _ in await store.list_definition_json(tenant)] == IN_BYTE_ORDER
    assert [engine.id for engine in await store.list_engines(tenant)] == IN_BYTE_ORDER
    assert [state.source_id for state in await store.source_states(tenant)] == IN_BYTE_ORDER
