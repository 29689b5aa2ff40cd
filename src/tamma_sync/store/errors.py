"""What a database error means to the caller: try again later, free some space, or this
content is refused."""

from __future__ import annotations

import os
import re
import shlex
import socket
import sqlite3
from typing import Final

from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)

from tamma_sync.models import InvalidWrite

#: Longest reason kept from a driver's message.
MAX_REASON: Final = 200
#: SQLSTATE classes of errors about the data itself: data exception, integrity violation.
_REFUSED_SQLSTATE_CLASSES: Final = ("22", "23")
#: PostgreSQL's disk_full, and its class: insufficient resources (memory, connections...).
_DISK_FULL_SQLSTATE: Final = "53100"
_INSUFFICIENT_RESOURCES_CLASS: Final = "53"
#: PostgreSQL's invalid_catalog_name (no such database), and the class of a refused login.
_NO_DATABASE_SQLSTATE: Final = "3D000"
_LOGIN_REFUSED_CLASS: Final = "28"
#: asyncpg names the value it could not encode: `invalid input for query argument $1: 'x'`.
_ARGUMENT_VALUE: Final = re.compile(r"(query argument \$\d+):.*")


class MigrationRefused(Exception):
    """A migration that will not run on this data, with what to do about it: the schema
    stays where it was."""


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether an error means the database cannot serve right now (worth a retry soon): it
    cannot be reached, or it is short of memory or connections. A full disk is not such
    an error (see `is_disk_full`): writes fail until someone frees space."""
    if is_disk_full(exc):
        return False
    if isinstance(exc, OperationalError | InterfaceError | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or _sqlstate(exc)[:2] == _INSUFFICIENT_RESOURCES_CLASS
    )


def is_disk_full(exc: BaseException) -> bool:
    """Whether the database refused to write for want of room: SQLite's SQLITE_FULL
    ("database or disk is full", also past a `max_page_count`) or PostgreSQL's disk_full."""
    if not isinstance(exc, DBAPIError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        return exc.orig.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL
    return _sqlstate(exc) == _DISK_FULL_SQLSTATE


def is_database_error(exc: BaseException) -> bool:
    """Whether an error came from the database layer (its text may carry SQL and values)."""
    return isinstance(exc, SQLAlchemyError)


def refusal_reason(exc: BaseException) -> str | None:
    """Why the store refused a write's content (a value it cannot keep, a text PostgreSQL
    will not take), or None when the error is not about the content.

    Only the driver's own first line is kept: SQLAlchemy's text of the same error carries
    the statement and its parameters, which may hold anything ELSA sent.
    """
    if isinstance(exc, InvalidWrite):
        return _cut(str(exc))
    if isinstance(exc, StatementError) and isinstance(exc.orig, InvalidWrite):
        return _cut(str(exc.orig))
    if not isinstance(exc, DBAPIError) or is_database_unavailable(exc):
        return None
    if (
        isinstance(exc, DataError | IntegrityError)
        or _sqlstate(exc)[:2] in _REFUSED_SQLSTATE_CLASSES
    ):
        return describe_database_error(exc)
    return None


def describe_unreachable_database(exc: BaseException, url: str) -> str | None:
    """Why the PostgreSQL database at `url` cannot be opened at all, in one line naming its
    host, port and database (never the password) and what to do; None for any other error.
    For start-up: retrying such an error would fail the same way."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    host, port = parsed.host or "localhost", parsed.port or 5432
    where = f"{host}:{port}"
    if isinstance(exc, DBAPIError) and _sqlstate(exc) == _NO_DATABASE_SQLSTATE:
        name = parsed.database or ""
        user = f" -U {shlex.quote(parsed.username)}" if parsed.username else ""
        return (
            f'PostgreSQL database "{name}" does not exist on {where}; create it with: '
            f"createdb -h {shlex.quote(host)} -p {port}{user} {shlex.quote(name)}"
        )
    if isinstance(exc, DBAPIError) and _sqlstate(exc)[:2] == _LOGIN_REFUSED_CLASS:
        return (
            f"PostgreSQL on {where} refused the login ({describe_database_error(exc)}); "
            "fix the user or password in TAMMA_SYNC_DATABASE_URL"
        )
    if isinstance(exc, OSError):  # asyncpg's own: refused, unknown host, timed out
        return (
            f"cannot connect to PostgreSQL on {where}: {_socket_reason(exc)}; start "
            "PostgreSQL there, or fix TAMMA_SYNC_DATABASE_URL"
        )
    return None


def _socket_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def _sqlstate(exc: DBAPIError) -> str:
    """PostgreSQL's SQLSTATE of the error ("" for SQLite's)."""
    return str(getattr(exc.orig, "sqlstate", None) or "")


def describe_database_error(exc: BaseException) -> str:
    """A database error in one line, without the statement or its parameters: the driver's
    own exception (asyncpg's, under SQLAlchemy's adapter) and its first line."""
    cause: BaseException = exc
    if isinstance(exc, StatementError) and exc.orig is not None:
        cause = exc.orig
        if cause.__cause__ is not None:
            cause = cause.__cause__
    first = (str(cause).strip().splitlines() or [""])[0]
    first = _ARGUMENT_VALUE.sub(r"\1", first)
    return _cut(f"{type(cause).__name__}: {first}" if first else type(cause).__name__)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
