"""Hostile input stops at the door: request bodies are bounded (413) and JSON may not be
nested absurdly deep (400) — Python's own JSON parser would otherwise run out of stack."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Deepest JSON nesting accepted; ELSA activity trees stay far below it.
MAX_JSON_DEPTH = 128
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class RequestLimits:
    """ASGI middleware: read at most `max_body_bytes` of a request, check its JSON nesting,
    then hand the body on unchanged."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self._app = app
        self._max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            await self._refuse(send, 413, f"Request body too large: the limit is {self._max} bytes")
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self._max:
                await self._refuse(
                    send, 413, f"Request body too large: the limit is {self._max} bytes"
                )
                return
        if b"json" in headers.get(b"content-type", b"") and _too_deep(bytes(body)):
            await self._refuse(send, 400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            return
        await self._app(scope, _replay(bytes(body), receive), send)

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
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


def _too_deep(body: bytes) -> bool:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return "depth limit" in str(exc)  # other errors: the app reports malformed JSON itself
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
