"""uvicorn's access log line, written once the response has gone out instead of before it.

uvicorn logs a request as its response's head is about to be written, so the client waits
for the line to be formatted and written (a tenth of a millisecond, a sixth of a small
request's CPU). Written after the response, it overlaps with the client reading it. The
line is uvicorn's own (its `uvicorn.access` logger, format and arguments), so log setups
made for uvicorn keep working; for a stream (SSE) it is written when the stream ends.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

if TYPE_CHECKING:
    from uvicorn._types import HTTPScope


class AccessLog:
    """ASGI wrapper: one `uvicorn.access` line per HTTP response, after it was sent."""

    def __init__(self, app: ASGIApp, logger: logging.Logger) -> None:
        self._app = app
        self._logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status: int | None = None

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            if status is not None:  # as uvicorn: no line for a response never begun
                http_scope = cast("HTTPScope", scope)
                self._logger.info(
                    '%s - "%s %s HTTP/%s" %d',
                    get_client_addr(http_scope),
                    scope["method"],
                    get_path_with_query_string(http_scope),
                    scope["http_version"],
                    status,
                )
