"""Requests to one ELSA server: credentials, retries, and answers as typed errors.

Every call goes through `Transport.call` (a JSON answer validated into a model) or
`Transport.command` (an answer whose body is ignored). Reads, login, token refresh and
ELSA's idempotent commands (cancel) are retried on connection errors, timeouts, 5xx, 429
and malformed 200 bodies, with jittered exponential backoff bounded in attempts and total
time; other 4xx are never retried. Credentials never appear in a log line or an error.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import aiohttp
import httpx
import orjson
import stamina
from pydantic import BaseModel, SecretStr, ValidationError

from tamma_sync.elsa.auth import Token
from tamma_sync.elsa.connections import Answer, Connections, Params
from tamma_sync.elsa.errors import (
    ElsaAuthError,
    ElsaNotFound,
    ElsaProtocolError,
    ElsaUnavailable,
)
from tamma_sync.elsa.wire import LoginResponse

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
Body = dict[str, Any] | None
#: What ELSA answers a request that worked (204: a command with nothing to say).
_SUCCESS: Final = frozenset({200, 204})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for a connection, and for each read/write on it."""

    connect: float = 5.0
    read: float = 30.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on retrying one request: attempts in all, and seconds after which none starts."""

    attempts: int = 5
    total_seconds: float = 30.0
    wait_initial: float = 0.2
    wait_max: float = 5.0
    wait_jitter: float = 0.5


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or junk."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.fromtimestamp(now, UTC)).total_seconds(), 0.0)


class Transport:
    """Authenticated, retried requests to one ELSA API root.

    Credentials are either an API key (`Authorization: ApiKey …`) or a username and
    password exchanged at `/identity/login` for a bearer token, renewed before its `exp`
    and re-obtained once after a 401.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_prefix: str,
        api_key: SecretStr | None,
        login: tuple[str, SecretStr] | None,
        timeouts: Timeouts,
        retry: RetryPolicy,
        source_id: str | None,
    ) -> None:
        self.source_id = source_id
        self._api_key = api_key
        self._login = login
        self._retry = retry
        prefix = api_prefix.strip("/")
        self._connections = Connections(
            base_url.rstrip("/") + (f"/{prefix}" if prefix else ""),
            connect=timeouts.connect,
            read=timeouts.read,
            # Certificate authorities as httpx finds them (certifi, SSL_CERT_FILE/DIR).
            tls=httpx.create_ssl_context(),
        )
        self._access: Token | None = None
        self._refresh: Token | None = None
        self._auth_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._connections.aclose()

    async def call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        params: Params | None = None,
        json: Body = None,
        retry: RetryPolicy | None = None,
    ) -> M:
        """Send with the current credentials; the answer's JSON body read into `model`.
        `retry` replaces the transport's policy for this request."""
        return await self._authorized(method, path, _reader(model), params, json, retry)

    async def command(self, method: str, path: str, *, json: Body = None) -> None:
        """Send a command whose answer has no body worth reading (ELSA's 200 or 204)."""
        await self._authorized(method, path, _ignore, None, json)

    async def _authorized(
        self,
        method: str,
        path: str,
        read: Callable[[Answer], R],
        params: Params | None,
        json: Body,
        retry: RetryPolicy | None = None,
    ) -> R:
        """Send with the current credentials; after a 401, log in afresh and try once more."""
        authorization = await self._authorization()
        try:
            return await self._send(method, path, read, params, json, authorization, retry)
        except ElsaAuthError as exc:
            if exc.status != 401 or self._login is None:
                raise
            await self._discard_token(authorization)
            authorization = await self._authorization()
            try:
                return await self._send(method, path, read, params, json, authorization, retry)
            except ElsaAuthError as again:
                if again.status != 401:
                    raise
                raise ElsaAuthError(
                    "still unauthorized after a fresh login", method=method, path=path, status=401
                ) from again

    async def _send(
        self,
        method: str,
        path: str,
        read: Callable[[Answer], R],
        params: Params | None,
        json: Body,
        authorization: str | None,
        retry: RetryPolicy | None = None,
    ) -> R:
        """One logical request, retried within the policy's bounds."""
        policy = retry or self._retry
        deadline = time.monotonic() + policy.total_seconds

        def should_retry(exc: Exception) -> bool | float:
            if isinstance(exc, ElsaUnavailable):
                if exc.retry_after is None:
                    return True
                # Respect Retry-After; if it lies beyond our budget, give up now.
                return exc.retry_after if time.monotonic() + exc.retry_after < deadline else False
            return isinstance(exc, ElsaProtocolError) and exc.status == 200

        attempt = 1
        try:
            return await self._send_once(method, path, read, params, json, authorization, attempt)
        except Exception as exc:
            if should_retry(exc) is False:
                raise
            failed: Exception | None = exc

        # The retries go through stamina, which waits, logs and bounds them; it is entered
        # only after a failure (it costs about a tenth of a request's CPU), and its first
        # call gives it the failure just seen. No arguments: stamina logs a retried
        # callable's arguments, and these carry secrets.
        async def once() -> R:
            nonlocal attempt, failed
            if failed is not None:
                seen, failed = failed, None
                raise seen
            attempt += 1
            return await self._send_once(method, path, read, params, json, authorization, attempt)

        caller = stamina.AsyncRetryingCaller(
            attempts=policy.attempts,
            timeout=max(deadline - time.monotonic(), 0.0),
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
        )
        return await caller(should_retry, once)

    async def _send_once(
        self,
        method: str,
        path: str,
        read: Callable[[Answer], R],
        params: Params | None,
        json: Body,
        authorization: str | None,
        attempt: int,
    ) -> R:
        headers = {"Authorization": authorization} if authorization else {}
        body = None
        if json is not None:
            body = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            response = await self._connections.send(
                method, path, params=params, body=body, headers=headers
            )
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise ElsaUnavailable(
                f"timed out ({type(exc).__name__}, attempt {attempt})", method=method, path=path
            ) from exc
        except aiohttp.ClientError as exc:
            raise ElsaUnavailable(
                f"connection failed ({type(exc).__name__}: {exc}, attempt {attempt})",
                method=method,
                path=path,
            ) from exc
        status = response.status
        logger.debug(
            "ELSA %s %s -> %d in %.0f ms (source %s, attempt %d)",
            method,
            path,
            status,
            (time.monotonic() - started) * 1000,
            self.source_id,
            attempt,
        )
        if status == 429 or status >= 500:
            raise ElsaUnavailable(
                f"server unavailable (attempt {attempt})",
                method=method,
                path=path,
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After"), time.time()),
            )
        if status == 401:
            raise ElsaAuthError(
                "unauthorized: credentials missing or rejected",
                method=method,
                path=path,
                status=status,
            )
        if status == 403:
            raise ElsaAuthError(
                "forbidden: the credentials lack a permission",
                method=method,
                path=path,
                status=status,
            )
        if status == 404:
            raise ElsaNotFound("not found", method=method, path=path, status=status)
        if status not in _SUCCESS:
            raise ElsaProtocolError(
                f"unexpected status: {response.text[:200]!r}",
                method=method,
                path=path,
                status=status,
            )
        try:
            return read(response)
        except ValidationError as exc:
            raise ElsaProtocolError(
                f"unexpected body ({_describe(exc)}; content-type "
                f"{response.headers.get('Content-Type')!r}, attempt {attempt})",
                method=method,
                path=path,
                status=status,
            ) from None

    # ── authentication ────────────────────────────────────────────────────────────────

    async def _authorization(self) -> str | None:
        """The Authorization header value, logging in or refreshing first if needed."""
        if self._api_key is not None:
            return f"ApiKey {self._api_key.get_secret_value()}"
        if self._login is None:
            return None
        async with self._auth_lock:
            if self._access is None or not self._access.is_fresh(time.time()):
                await self._renew_tokens()
            assert self._access is not None
            return f"Bearer {self._access.value}"

    async def _discard_token(self, rejected: str | None) -> None:
        """Forget a token the server rejected (unless another task already replaced it)."""
        async with self._auth_lock:
            if self._access is not None and f"Bearer {self._access.value}" == rejected:
                self._access = None
                self._refresh = None

    async def _renew_tokens(self) -> None:
        """Refresh with the refresh token while it is fresh; else (or if refused) log in."""
        if self._refresh is not None and self._refresh.is_fresh(time.time()):
            try:
                refreshed = await self._send(
                    "POST",
                    "/identity/refresh-token",
                    _reader(LoginResponse),
                    None,
                    None,
                    f"Bearer {self._refresh.value}",
                )
            except (ElsaAuthError, ElsaNotFound, ElsaProtocolError) as exc:
                logger.info("ELSA token refresh failed, logging in again: %s", exc)
            else:
                if self._keep_tokens(refreshed):
                    return
        # Login and refresh change nothing on the server, so they are retried like reads.
        assert self._login is not None
        username, password = self._login
        body = {"username": username, "password": password.get_secret_value()}
        response = await self._send(
            "POST", "/identity/login", _reader(LoginResponse), None, body, None
        )
        if not self._keep_tokens(response):
            raise ElsaAuthError(
                "the server refused the login", method="POST", path="/identity/login"
            )
        logger.info("logged in to ELSA (source %s)", self.source_id)

    def _keep_tokens(self, response: LoginResponse) -> bool:
        if not response.is_authenticated or not response.access_token:
            return False
        now = time.time()
        self._access = Token.issued(response.access_token, now)
        if response.refresh_token:
            self._refresh = Token.issued(response.refresh_token, now)
        return True


def _reader(model: type[M]) -> Callable[[Answer], M]:
    def read(response: Answer) -> M:
        return model.model_validate_json(response.content)

    return read


def _ignore(_: Answer) -> None:
    return None


def _describe(exc: ValidationError) -> str:
    """Where the body was wrong, without echoing any of it (it may hold tokens)."""
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{exc.error_count()} error(s), first at {where}: {first['msg']}"
