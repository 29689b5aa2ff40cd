"""Brokers: what wakes the change feed when the change log grows.

A broker never carries events, only the news that there are new ones (at most a seq): the
change log is the truth, and the feed reads it. `MemoryBroker` hears the commits of this
process; `PostgresBroker` LISTENs to the NOTIFY every PostgreSQL write transaction sends,
so a commit in any replica wakes every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import asyncpg
from sqlalchemy.engine import make_url

from tamma_sync.store import Store
from tamma_sync.store.store import CHANGES_CHANNEL

log = logging.getLogger(__name__)

#: Called with the newest seq a broker heard of, or None for "something may have changed".
Wake = Callable[[int | None], None]

RECONNECT_DELAY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)


class Broker(Protocol):
    async def start(self, wake: Wake) -> None: ...

    async def stop(self) -> None: ...


class MemoryBroker:
    """One process: the store tells us about each of its commits."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def start(self, wake: Wake) -> None:
        self._store.add_commit_listener(wake)

    async def stop(self) -> None:
        return None


class PostgresBroker:
    """Every replica: LISTEN on one dedicated connection that reconnects by itself.

    After every (re)connect it wakes the feed with None, so changes committed while it was
    not listening are read from the change log: nothing is lost to a database restart.
    """

    def __init__(self, database_url: str) -> None:
        self._dsn = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, wake: Wake) -> None:
        self._task = asyncio.create_task(self._listen(wake), name="postgres-broker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self, wake: Wake) -> None:
        failures = 0
        listened_before = False
        while True:
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(self._dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                delay = RECONNECT_DELAY_SECONDS[min(failures, len(RECONNECT_DELAY_SECONDS) - 1)]
                log.warning("change feed: cannot LISTEN (%s); retrying in %ss", exc, delay)
                failures += 1
                await asyncio.sleep(delay)
                continue

            def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
                wake(int(payload) if payload.isdigit() else None)

            try:
                connection.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await connection.add_listener(CHANGES_CHANNEL, on_notify)
                if listened_before:
                    self.reconnects += 1
                    log.info("change feed: listening again")
                listened_before, failures = True, 0
                self._connected.set()
                wake(None)  # catch up on whatever was committed while not listening
                await self._until_lost(connection, lost)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("change feed: LISTEN connection failed: %s", exc)
            finally:
                self._connected.clear()
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)

    @staticmethod
    async def _until_lost(connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Wait until the server goes away; a cheap probe catches silently dead sockets."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), timeout=10)
            if not lost.is_set():
                try:
                    await connection.execute("SELECT 1", timeout=5)
                except (OSError, asyncpg.PostgresError, TimeoutError):
                    return


def broker_for(store: Store, database_url: str) -> Broker:
    """The broker the database calls for: NOTIFY on PostgreSQL, in-process on SQLite."""
    return MemoryBroker(store) if store.is_sqlite else PostgresBroker(database_url)
