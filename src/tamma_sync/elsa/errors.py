"""What can go wrong talking to ELSA, as a small hierarchy the sync worker can act on.

Unavailable: back off and try again later. Auth: fix the credentials or permissions.
Protocol: the server answered something this client does not understand. NotFound: the
entity is gone (a deletion the mirror should learn about). Messages name the request
(method, path, status) and never carry credentials.
"""

from __future__ import annotations


class ElsaError(Exception):
    """Base of every error the ELSA client raises."""

    def __init__(self, message: str, *, method: str, path: str, status: int | None = None) -> None:
        self.method = method
        self.path = path
        self.status = status
        where = f"{method} {path}" + (f" -> HTTP {status}" if status is not None else "")
        super().__init__(f"{where}: {message}")


class ElsaUnavailable(ElsaError):
    """Connection failure, timeout, 5xx or 429 that outlasted the retry budget.

    `retry_after` is the server's Retry-After in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, status=status)
        self.retry_after = retry_after


class ElsaAuthError(ElsaError):
    """401 or 403, or a login the server refused."""


class ElsaProtocolError(ElsaError):
    """Malformed JSON, an unexpected shape, a non-JSON 200, or a 4xx this client did not expect."""


class ElsaNotFound(ElsaError):
    """404: the entity (or, for optional endpoints, the route) does not exist."""
