"""Connections to one ELSA server: an httpx client of one connection per request in flight.

httpcore's pool looks at every connection it holds before and after each request — for an
idle one, a poll of its socket through several layers of attribute lookups — so its cost
per request grows with the connections open. The sync keeps one per detail request in
flight (eight by default), and that bookkeeping was about a third of its CPU with details.
A client per connection, lent to one request at a time, looks at one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx

#: Requests in flight at most; those beyond wait for a connection to come back. The
#: sync's own bound (details concurrency, at most 64, plus the listing) stays below it.
MAX_CONNECTIONS = 100


class Connections:
    """Clients of one keep-alive connection each, made as requests need them and each
    lent to one request at a time; a client's connection is re-opened by httpx when the
    server closed it or it sat idle past its keep-alive expiry."""

    def __init__(self, make_client: Callable[[], httpx.AsyncClient]) -> None:
        self._make_client = make_client
        self._idle: list[httpx.AsyncClient] = []
        self._made: list[httpx.AsyncClient] = []
        self._free = asyncio.Semaphore(MAX_CONNECTIONS)
        self._closed = False

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[httpx.AsyncClient]:
        async with self._free:
            if self._closed:  # as a closed httpx client would say
                raise RuntimeError("cannot send a request: the ELSA client has been closed")
            client = self._idle.pop() if self._idle else self._new_client()
            try:
                yield client
            finally:
                self._idle.append(client)

    def _new_client(self) -> httpx.AsyncClient:
        client = self._make_client()
        self._made.append(client)
        return client

    async def aclose(self) -> None:
        self._closed = True
        for client in self._made:
            await client.aclose()
        self._made.clear()
        self._idle.clear()
