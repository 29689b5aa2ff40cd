"""The ELSA simulator over real loopback HTTP, with a recorder in front of it.

`Recorder` only observes the simulator's traffic (method, path, query, status), except for
what the simulator cannot do itself: answering chosen requests with a fixed status (routes
ELSA 3.0/3.2 lack, a 429 with Retry-After), running a callback when a request arrives
(to mutate the server mid-listing), and rewriting instance listings (a row ELSA could
send that the simulator never makes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tamma_sync.elsa import ElsaClient, RetryPolicy, Timeouts
from tamma_sync.simulator import ElsaSimulator
from tests.support.server import serve_in_thread

#: Retries that still back off and jitter, but in milliseconds.
FAST_RETRY = RetryPolicy(
    attempts=4, total_seconds=10.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01
)
TIMEOUTS = Timeouts(connect=2.0, read=5.0)


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    query: str
    status: int
    connection: tuple[str, int] | None = None
    """The client's (host, port): one per TCP connection."""


@dataclass
class Canned:
    """Answer `method` requests whose path ends with `path_suffix` with `status` (`count` times)."""

    method: str
    path_suffix: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    count: int | None = None


class Recorder:
    """ASGI wrapper: logs every exchange, answers canned requests, runs request callbacks."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.log: list[Exchange] = []
        self.canned: list[Canned] = []
        self.on_request: Callable[[str, str, str], None] | None = None
        self.rewrite: Callable[[dict[str, Any]], None] | None = None
        """Edits the JSON body of every instance listing before it is sent."""

    def paths(self, method: str | None = None) -> list[str]:
        return [e.path for e in self.log if method is None or e.method == method]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        query = scope["query_string"].decode()
        connection = scope.get("client")
        if self.on_request is not None:
            self.on_request(method, path, query)
        canned = self._canned(method, path)
        if canned is not None:
            self.log.append(Exchange(method, path, query, canned.status, connection))
            headers = [(k.lower().encode(), v.encode()) for k, v in canned.headers.items()]
            await send({"type": "http.response.start", "status": canned.status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.log.append(Exchange(method, path, query, message["status"], connection))
            await send(message)

        if self.rewrite is not None and path.endswith("/workflow-instances"):
            await self._rewritten(scope, receive, recording_send, self.rewrite)
        else:
            await self._app(scope, receive, recording_send)

    async def _rewritten(
        self, scope: Scope, receive: Receive, send: Send, rewrite: Callable[[dict[str, Any]], None]
    ) -> None:
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await self._app(scope, receive, keep)
        body = orjson.loads(b"".join(m.get("body", b"") for m in messages[1:]))
        rewrite(body)
        content = orjson.dumps(body)
        headers = [(k, v) for k, v in messages[0]["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(content)).encode()))
        await send({**messages[0], "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _canned(self, method: str, path: str) -> Canned | None:
        for canned in self.canned:
            if canned.method == method and path.endswith(canned.path_suffix):
                if canned.count is not None:
                    canned.count -= 1
                    if canned.count <= 0:
                        self.canned.remove(canned)
                return canned
        return None


@contextmanager
def serving(simulator: ElsaSimulator) -> Iterator[tuple[str, Recorder]]:
    """The simulator on a loopback port: (base URL, recorder)."""
    recorder = Recorder(simulator.app)
    with serve_in_thread(recorder) as url:
        yield url, recorder


def client_for(
    url: str,
    *,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    page_size: int = 100,
    retry: RetryPolicy = FAST_RETRY,
    timeouts: Timeouts = TIMEOUTS,
) -> ElsaClient:
    """A client with fast retries and bounded timeouts."""
    return ElsaClient(
        url,
        api_key=api_key,
        username=username,
        password=password,
        page_size=page_size,
        retry=retry,
        timeouts=timeouts,
    )
