"""uvicorn's access log line, written once the response has gone out instead of before it.

uvicorn logs a request as its response's head is about to be written, so the client waits
for the line to be formatted and written (a tenth of a millisecond, a sixth of a small
request's CPU). Written after the response, it overlaps with the client reading it. The
line is uvicorn's own (its `uvicorn.access` logger, format and arguments), so log setups
made for uvicorn keep working; for a stream (SSE) it is written when the stream ends. In
text logs it is formatted by `AccessLineFormatter`: uvicorn's text, for half the cost.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any, cast

import uvicorn.config
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.logging import AccessFormatter
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


class AccessLineFormatter(AccessFormatter):
    """uvicorn's access line, the same text, made for a tenth of a small request's CPU
    less: without colours (a log that is not a terminal), the record is neither copied
    twice (uvicorn's formatter copies it in each of its two layers) nor the status's
    phrase looked up again for every line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._status_texts: dict[int, str] = {}

    def get_status_code(self, status_code: int) -> str:
        found = self._status_texts.get(status_code)
        if found is None:
            found = self._status_texts[status_code] = super().get_status_code(status_code)
        return found

    def formatMessage(self, record: logging.LogRecord) -> str:
        if self.use_colors:
            return super().formatMessage(record)
        client_addr, method, full_path, http_version, status_code = cast(
            "tuple[Any, ...]", record.args
        )
        record.__dict__.update(
            client_addr=client_addr,
            request_line=f"{method} {full_path} HTTP/{http_version}",
            status_code=self.get_status_code(int(status_code)),
            levelprefix=f"{record.levelname}:".ljust(9),
        )
        return logging.Formatter.formatMessage(self, record)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging setup, its access lines made by `AccessLineFormatter`."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["access"]["()"] = f"{__name__}.{AccessLineFormatter.__qualname__}"
    return config
