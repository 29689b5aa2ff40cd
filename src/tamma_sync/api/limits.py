"""Hostile input stops at the door.

`whole_body` bounds a request's body (413) and `nul_in_target` finds a NUL character in
its path or query (PostgreSQL cannot compare text with one), for `FrontDoor` to refuse.
`JsonRoute` parses every JSON body one strict way, whatever its encoding: RFC 8259 JSON in
UTF-8 (NaN, Infinity and numbers beyond a double are malformed), nested at most
`MAX_JSON_DEPTH` levels and made of at most `MAX_JSON_VALUES` values, with large bodies
parsed off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
import orjson
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message, Receive, Scope, Send

#: Deepest JSON nesting accepted; ELSA activity trees stay far below it.
MAX_JSON_DEPTH = 128
#: Most values (objects, arrays, scalars) one body may hold: bounds the work it costs.
MAX_JSON_VALUES = 1_000_000
#: Bodies larger than this are parsed in a worker thread, not on the event loop.
INLINE_PARSE_BYTES = 64 * 1024
#: The original API (Fastify) skipped a UTF-8 byte order mark; so does this one.
UTF8_BOM = b"\xef\xbb\xbf"
#: Methods whose body is read whole before the app sees the request.
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
NUL_REFUSED = "The NUL character (\\u0000) is not allowed in a path, a query or a text field"


def nul_in_target(scope: Scope) -> bool:
    """Whether the request's path or query holds a NUL character, raw or escaped."""
    query: bytes = scope["query_string"]
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


async def whole_body(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> bytes | None:
    """The request's body, read whole; None if it is larger than `max_bytes` (refused
    here: 413) or the client left."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        await refuse(send, 413, f"Request body too large: the limit is {max_bytes} bytes")
        return None
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > max_bytes:
            await refuse(send, 413, f"Request body too large: the limit is {max_bytes} bytes")
            return None
    return bytes(body)


class JsonRequest(Request):
    """A request whose `json()` is `parse_json_body`, run in a thread for large bodies."""

    _parsed: Any

    async def json(self) -> Any:
        if not hasattr(self, "_parsed"):
            body = await self.body()
            if len(body) > INLINE_PARSE_BYTES:
                self._parsed = await anyio.to_thread.run_sync(parse_json_body, body)
            else:
                self._parsed = parse_json_body(body)
        return self._parsed


class JsonRoute(APIRoute):
    """The route class of every router that takes a JSON body (FastAPI's documented way to
    replace how a request is read)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return handle


def parse_json_body(body: bytes) -> Any:
    """The body's JSON value, or an HTTPException (400) saying what is wrong with it."""
    if body.startswith(UTF8_BOM):
        body = body[len(UTF8_BOM) :]
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "recursion" in str(exc) or "depth" in str(exc):
            raise _bad_body(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
        raise _bad_body(f"Malformed JSON body: {exc}") from None
    # Cheap bounds first: a body with few brackets and commas needs no walk.
    containers = body.count(b"{") + body.count(b"[")
    if containers > MAX_JSON_DEPTH or containers + body.count(b",") >= MAX_JSON_VALUES:
        _check_shape(value)
    return value


def _check_shape(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    values = 1
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _bad_body(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            values += len(item)  # counted before they are stacked: the walk stays bounded
            if values > MAX_JSON_VALUES:
                raise _bad_body(f"JSON body of more than {MAX_JSON_VALUES:,} values")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _bad_body(message: str) -> HTTPException:
    return HTTPException(400, detail={"error": message})


async def refuse(send: Send, status: int, message: str) -> None:
    payload = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def replayed(body: bytes, receive: Receive) -> Receive:
    """`receive`, giving the request's `body` (already read) first."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
