"""Connections to one ELSA server: one aiohttp session, its connections kept alive.

aiohttp rather than httpx here: on a loopback request to the simulator, httpx spent about
0.5 ms of the sync's CPU (httpcore's anyio cancel scopes and locks around every read, and
its pool looking at every connection it holds before and after each request), aiohttp
0.15 ms. With details the sync makes two requests per running instance, and that was
most of its CPU.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

#: Requests in flight at most; those beyond wait for a connection to come back. The
#: sync's own bound (details concurrency, at most 64, plus the listing) stays below it.
MAX_CONNECTIONS = 100

#: A request's query: names and values, a name repeated as often as it is given.
Params = Sequence[tuple[str, str | int]]


@dataclass(frozen=True, slots=True)
class Answer:
    """What ELSA answered: its status, headers and whole body."""

    status: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class Connections:
    """Keep-alive connections to the server at `root` (a URL that paths are appended to),
    opened as requests need them, MAX_CONNECTIONS at most. The proxy comes from the
    environment (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`), read once: aiohttp's own
    `trust_env` reads it, and the netrc file, again in a thread for every request."""

    def __init__(self, root: str, *, connect: float, read: float, tls: ssl.SSLContext) -> None:
        self._root = root
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._proxy: tuple[URL, aiohttp.BasicAuth | None] | None = None
        self._closed = False

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Params | None,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> Answer:
        """One request and its whole answer; aiohttp's errors as it raises them."""
        if self._closed:  # as a closed client would say
            raise RuntimeError("cannot send a request: the ELSA client has been closed")
        session = self._session or self._open()
        # Paths come percent-encoded (ids are quoted by the client): sent as they are.
        url = URL(self._root + path, encoded=True)
        proxy, proxy_auth = self._proxy or (None, None)
        async with session.request(
            method,
            url,
            params=params,
            data=body,
            headers=headers,
            allow_redirects=False,
            proxy=proxy,
            proxy_auth=proxy_auth,
        ) as response:
            return Answer(response.status, response.headers, await response.read())

    def _open(self) -> aiohttp.ClientSession:
        """The session, made on the first request: it belongs to the running event loop."""
        try:
            self._proxy = get_env_proxy_for_url(URL(self._root))
        except LookupError:  # none set, or NO_PROXY names the server
            self._proxy = None
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=self._tls),
            timeout=self._timeout,
            headers={"Accept": "application/json"},
        )
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
