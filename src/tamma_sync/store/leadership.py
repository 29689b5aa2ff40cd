"""Leadership: which process does a job that must run once (the sync of a source).

PostgreSQL: a session advisory lock on a connection of its own. SQLite: an exclusive
`flock` on a file beside the database. Either is released when the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
from pathlib import Path
from typing import IO, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)


class Leadership(Protocol):
    """Held while this process is the one doing a job that must run once (see Store.lead)."""

    async def still_held(self) -> bool: ...

    async def release(self) -> None: ...


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


class AdvisoryLeadership:
    """A PostgreSQL session advisory lock on a connection of its own (autocommit, so no
    transaction stays open); lost, and reported as lost, if that connection dies."""

    def __init__(self, conn: AsyncConnection, key: int) -> None:
        self._conn = conn
        self._key = key
        self._held = True

    @classmethod
    async def acquire(cls, sql_engine: AsyncEngine, name: str) -> AdvisoryLeadership | None:
        key = _lock_key(name)
        conn = await (await sql_engine.connect()).execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = (
                await conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            ).scalar()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return None
        return cls(conn, key)

    async def still_held(self) -> bool:
        if self._held:
            try:
                await self._conn.execute(sa.text("SELECT 1"))
            except (DBAPIError, OSError):
                await self._drop()
        return self._held

    async def release(self) -> None:
        if self._held:
            # If the session is gone, so is its lock.
            with contextlib.suppress(DBAPIError, OSError):
                await self._conn.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
            await self._drop()

    async def _drop(self) -> None:
        self._held = False
        try:
            await self._conn.close()
        except (DBAPIError, OSError):
            log.debug("closing a dead leadership connection failed", exc_info=True)


class FileLeadership:
    """An exclusive `flock` on a file beside the SQLite database; the OS releases it when
    the process dies."""

    def __init__(self, handle: IO[str] | None) -> None:
        self._handle = handle

    @classmethod
    def acquire(cls, database: str | None, name: str) -> FileLeadership | None:
        if not database or database == ":memory:":
            return cls(None)  # a private in-memory database has no other process
        safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        handle = Path(f"{database}.{safe_name}.lock").open("a")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return cls(handle)

    async def still_held(self) -> bool:
        return self._handle is None or not self._handle.closed

    async def release(self) -> None:
        if self._handle is not None and not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
