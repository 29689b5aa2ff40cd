"""Every error leaves the API as `{"error": "<what is wrong>"}`, the Tamma contract's shape.

Validation failures and malformed JSON are 400 (the original API never answered 422), a
database that cannot be reached is 503, one whose disk is full 507 (Insufficient Storage:
no retry helps until space is freed), and nothing else ever shows a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tamma_sync.api.responses import JsonBytes
from tamma_sync.models import InvalidWrite
from tamma_sync.store import describe_database_error, is_database_unavailable
from tamma_sync.store.errors import is_disk_full

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 2
DISK_FULL = "Database disk is full: writes are refused until space is freed"


class ApiError(Exception):
    """An error a route raises on purpose: a status and the body's `error` message."""

    def __init__(self, status_code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = {"error": message, **extra}


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """One readable line from pydantic's error list, e.g. `definitionId: Field required`."""
    parts: list[str] = []
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", "invalid JSON")
            parts.append(f"Malformed JSON body: {reason}")
            continue
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        where = ".".join(location)
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "Invalid request"


def _error(
    status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JsonBytes:
    """The same bytes as Starlette's `JSONResponse`, encoded by orjson: a .NET sync's every
    new instance is first answered 404."""
    return JsonBytes(orjson.dumps(body), status_code=status_code, headers=headers)


async def _on_api_error(_request: Request, exc: Exception) -> JsonBytes:
    assert isinstance(exc, ApiError)
    return _error(exc.status_code, exc.body)


async def _on_validation_error(_request: Request, exc: Exception) -> JsonBytes:
    assert isinstance(exc, RequestValidationError)
    return _error(400, {"error": describe_validation_errors(exc.errors())})


async def _on_http_error(_request: Request, exc: Exception) -> JsonBytes:
    assert isinstance(exc, StarletteHTTPException)
    body = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
    return _error(exc.status_code, body, dict(exc.headers) if exc.headers else None)


async def _on_invalid_write(_request: Request, exc: Exception) -> JsonBytes:
    return _error(400, {"error": str(exc)})


async def _on_database_error(request: Request, exc: Exception) -> JsonBytes:
    if isinstance(exc, StatementError) and isinstance(exc.orig, InvalidWrite):
        return await _on_invalid_write(request, exc.orig)
    # The driver's line only: SQLAlchemy's text of the error carries the rows' values.
    reason = describe_database_error(exc)
    if is_disk_full(exc):
        log.error("database disk full during %s %s: %s", request.method, request.url.path, reason)
        return _error(HTTPStatus.INSUFFICIENT_STORAGE, {"error": DISK_FULL})
    if is_database_unavailable(exc):
        log.warning(
            "database unavailable during %s %s: %s", request.method, request.url.path, reason
        )
        return _error(
            503,
            {"error": "Database unavailable, try again shortly"},
            {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    return await _on_unexpected_error(request, exc)


async def _on_unexpected_error(request: Request, exc: Exception) -> JsonBytes:
    log.exception("unhandled error during %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, {"error": "Internal Server Error"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(InvalidWrite, _on_invalid_write)
    app.add_exception_handler(StatementError, _on_database_error)
    app.add_exception_handler(ConnectionError, _on_database_error)
    app.add_exception_handler(TimeoutError, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
