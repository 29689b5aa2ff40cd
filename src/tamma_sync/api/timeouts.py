"""Deadlines for receiving a request, so that slow clients cannot hold connections forever.

uvicorn closes an idle keep-alive connection after a few seconds, but any byte received
cancels that timer: a client sending its request a byte at a time (slowloris) keeps its
connection, and a new one that sends nothing is never closed at all. Here, through
uvicorn's public `Config(http=…)`:

- the head: from the moment the server waits for a request (the connection opened, or
  the response before ended), the request's head must be complete within the timeout;
  else 408 if some of it came, and the connection is closed;
- the body, as the app reads it: all of it within the timeout after the head, plus one
  second per `MIN_BODY_RATE` bytes received (a trickle earns nothing); else 408 (or, if
  the response has begun, a disconnect) and the connection is closed. A body the app
  never reads is cut by the next head's deadline, which starts once the response ends.

Only receiving the request is bounded: once its body is complete, `receive()` waits as
long as the app likes, as an SSE stream does there for the client to leave.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tamma_sync.api.access_log import AccessLog
from tamma_sync.settings import MIN_BODY_RATE


def request_deadlines(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol with a `seconds` deadline on each request's head and body."""

    class RequestDeadlines(_DeadlineProtocol):
        timeout = seconds

    return RequestDeadlines


class _DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (its default), with a deadline on the request's head,
    and its app wrapped in `BodyDeadline` (and in `AccessLog`, which takes over uvicorn's
    access log line). Relies only on uvicorn's public names."""

    timeout: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app: ASGIApp = BodyDeadline(self.app, self.timeout)
        if self.access_log:  # uvicorn's line, but written after the response (access_log.py)
            self.access_log = False
            app = AccessLog(app, self.access_logger)
        self.app = app
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_received()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:
            self._head_begun = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head_received()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Nothing in flight (no pipelined request started): the next head is due.
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._await_head()

    def _await_head(self) -> None:
        self._head_received()
        self._head_begun = False
        self._head_timer = self.loop.call_later(self.timeout, self._head_timed_out)

    def _head_received(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_begun:
            what = f"the request's head did not arrive within {self.timeout:g} s"
            self.transport.write(_timeout_response(what, self.server_state.default_headers))
        self.transport.close()


class BodyDeadline:
    """ASGI wrapper: a request body that does not arrive in time gets 408 and the
    connection closed; the app is told the client has gone."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self._app = app
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        body = _Body(receive, send, self._seconds)
        await self._app(scope, body.receive, body.send)


class _Body:
    """One request's body as the app receives it, and its response as the app sends it."""

    def __init__(self, receive: Receive, send: Send, seconds: float) -> None:
        self._receive = receive
        self._send = send
        self._seconds = seconds
        self._started = asyncio.get_running_loop().time()
        self._received = 0
        self._complete = False
        self._timed_out = False
        self._response_started = False

    async def receive(self) -> Message:
        if self._timed_out:
            return {"type": "http.disconnect"}
        if self._complete:
            return await self._receive()
        deadline = self._started + self._seconds + self._received / MIN_BODY_RATE
        try:
            async with asyncio.timeout_at(deadline):
                message = await self._receive()
        except TimeoutError:
            await self._time_out()
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            self._complete = not message.get("more_body", False)
        else:
            self._complete = True
        return message

    async def send(self, message: Message) -> None:
        if self._timed_out:
            return  # the 408 went instead; the app learns of it at its next receive()
        if message["type"] == "http.response.start":
            self._response_started = True
        await self._send(message)

    async def _time_out(self) -> None:
        self._timed_out = True
        if self._response_started:
            return  # too late for a 408: uvicorn closes a response the app leaves unfinished
        payload = orjson.dumps({"error": "Request Timeout: the request's body came too slowly"})
        await self._send(
            {
                "type": "http.response.start",
                "status": 408,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await self._send({"type": "http.response.body", "body": payload})


def _timeout_response(what: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole 408 response, closing the connection, written where no ASGI cycle exists."""
    payload = orjson.dumps({"error": f"Request Timeout: {what}"})
    head = [b"HTTP/1.1 408 Request Timeout"]
    head += [name + b": " + value for name, value in default_headers]
    head += [
        b"content-type: application/json",
        b"content-length: " + str(len(payload)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + payload
