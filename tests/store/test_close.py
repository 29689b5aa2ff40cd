"""Closing the store at shutdown: what was still reading ends before the event loop does."""

from __future__ import annotations

import asyncio
import threading

from tamma_sync.store import Store
from tests.conftest import run_async

#: A statement that runs for about half a second, on each dialect.
SLOW_STATEMENT = {
    "sqlite": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000000)"
    " SELECT count(*) FROM n",
    "postgresql": "SELECT pg_sleep(0.5)",
}


async def _close_while_a_read_is_cancelled(database_url: str) -> None:
    """What a shutdown does: cancel a task in the middle of a statement (a stream's check of
    its API key, say) without waiting for it, close the store, and end the loop."""
    store = Store.from_url(database_url)
    started = asyncio.Event()

    async def read() -> None:
        async with store.sql_engine.connect() as conn:
            started.set()
            await conn.exec_driver_sql(SLOW_STATEMENT[store.sql_engine.dialect.name])

    reading = asyncio.create_task(read())
    await started.wait()
    await asyncio.sleep(0.1)  # the statement is running
    reading.cancel()
    await store.close()


def test_a_statement_cancelled_at_shutdown_ends_before_the_event_loop(database_url: str) -> None:
    """The store's close waits for the connection the cancelled read still holds. Else,
    on SQLite, aiosqlite's thread finished the statement after the loop had closed and
    raised in that thread (`Event loop is closed`), as a CI run once showed."""
    raised: list[BaseException | None] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda failure: raised.append(failure.exc_value)
    try:
        run_async(_close_while_a_read_is_cancelled(database_url))
        for thread in threading.enumerate():
            if "_connection_worker_thread" in thread.name:  # aiosqlite's, one per connection
                thread.join(timeout=5)
    finally:
        threading.excepthook = previous_hook
    assert raised == []
