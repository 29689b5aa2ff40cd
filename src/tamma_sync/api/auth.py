"""Who is calling: API keys (`Authorization: Bearer <key>`), their tenant and scopes.

With no API key in the database the server is open — but only on loopback, unless started
with `--insecure` (see `cli.serve`); once a key exists every request needs one. Each route
asks for one scope and gets the caller's tenant back, so every query is tenant-scoped. A
stream, which outlives its request, asks again as long as it runs (`Authenticator.watch`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tamma_sync.api.errors import ApiError
from tamma_sync.models import DEFAULT_TENANT_ID, ApiKey, Scope
from tamma_sync.store import Store, is_database_unavailable

log = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, description="An API key from `tamma-sync keys create`.")

#: Seconds between a stream's lookups of its key at least: with `auth_cache_seconds` 0 a
#: revoked key's streams end about this promptly, and no stream asks in a busy loop.
RECHECK_MIN_SECONDS = 1.0
#: Added to a re-check's wait, so that it wakes after the cached verdict expired, not on it.
RECHECK_SLACK_SECONDS = 0.01


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    scopes: frozenset[Scope]
    key_id: str | None
    """None when the server is open (no API keys)."""


OPEN = Principal(tenant_id=DEFAULT_TENANT_ID, scopes=frozenset(Scope), key_id=None)


@dataclass(frozen=True)
class Access:
    """What a request was let in with: a stream keeps asking whether it still would be."""

    tenant_id: str
    scope: Scope
    token: str | None = field(repr=False)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Turns an `Authorization` header into a Principal. Verified keys (and whether any key
    exists) are trusted for `cache_seconds` without asking the database again, so a revoked
    key stops working within that time."""

    def __init__(self, store: Store, *, keys_required: bool, cache_seconds: float) -> None:
        self._store = store
        self._keys_required = keys_required
        self._cache_seconds = cache_seconds
        self._keys_exist: tuple[bool, float] = (False, 0.0)
        self._verified: dict[str, tuple[ApiKey | None, float]] = {}
        self._lookups: dict[str, asyncio.Task[ApiKey | None]] = {}

    async def principal(self, token: str | None) -> Principal:
        if not await self._enforced():
            return OPEN
        if not token:
            raise ApiError(401, "Not authenticated")
        key = await self._verify(token)
        if key is None:
            raise ApiError(401, "Not authenticated")
        return Principal(tenant_id=key.tenant_id, scopes=frozenset(key.scopes), key_id=key.id)

    async def access(self, token: str | None, scope: Scope) -> Access:
        """The caller's access, if `token` holds `scope` (401/403 otherwise)."""
        principal = await self.principal(token)
        if scope not in principal.scopes:
            raise ApiError(403, "Insufficient permissions", required=scope.value)
        return Access(tenant_id=principal.tenant_id, scope=scope, token=token)

    async def watch(self, access: Access) -> str:
        """Return, with why, once a new request would no longer get `access`: the key was
        revoked or deleted (or, on an open server, keys now exist), or it cannot be told.

        It asks as the cached verdict on the key expires, so a stream ends within
        `cache_seconds` of a revocation (`RECHECK_MIN_SECONDS` at the least), and costs one
        lookup per period, shared with every request and stream that uses the same key. A
        database that cannot be reached is asked again later: the stream it guards has
        nothing to deliver meanwhile, as the change log lives in that database."""
        delay = self._recheck_in(access.token)
        while True:
            await asyncio.sleep(delay)
            try:
                current = await self.access(access.token, access.scope)
            except ApiError:
                break
            except Exception as exc:
                if not is_database_unavailable(exc):
                    log.exception("cannot re-check a stream's API key: ending the stream")
                    return "API key could not be re-checked"
                log.warning("cannot re-check a stream's API key: %s", exc)
                delay = RECHECK_MIN_SECONDS
                continue
            if current.tenant_id != access.tenant_id:
                break
            delay = self._recheck_in(access.token)
        return "API key revoked" if access.token else "Not authenticated"

    def _recheck_in(self, token: str | None) -> float:
        """Seconds until asking about `token` again can tell something new: once its cached
        verdict has expired, and `RECHECK_MIN_SECONDS` after the lookup that made it."""
        cached = self._verified.get(token) if token else None
        expires = cached[1] if cached is not None else self._keys_exist[1]
        floor = max(RECHECK_MIN_SECONDS - self._cache_seconds, 0.0)
        return max(expires + floor - time.monotonic(), 0.0) + RECHECK_SLACK_SECONDS

    async def _enforced(self) -> bool:
        if self._keys_required:
            return True
        exist, until = self._keys_exist
        if time.monotonic() >= until:
            exist = await self._store.has_active_api_keys()
            self._keys_exist = (exist, time.monotonic() + self._cache_seconds)
        return exist

    async def _verify(self, token: str) -> ApiKey | None:
        cached = self._verified.get(token)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        # One lookup per key at a time: the streams that re-check a key as its verdict
        # expires, all at once, and a burst of requests with it share one query.
        lookup = self._lookups.get(token)
        if lookup is None:
            lookup = asyncio.create_task(self._look_up(token), name="api-key-lookup")
            self._lookups[token] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(token, None))
        return await asyncio.shield(lookup)

    async def _look_up(self, token: str) -> ApiKey | None:
        now = time.monotonic()
        key = await self._store.verify_api_key(token)
        if len(self._verified) > 10_000:  # keep the cache bounded against junk tokens
            self._verified.clear()
        self._verified[token] = (key, now + self._cache_seconds)
        return key


def access_for(scope: Scope) -> Callable[..., Awaitable[Access]]:
    """A dependency: the caller's access, if the caller holds `scope` (401/403 otherwise)."""

    async def access(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Access:
        authenticator: Authenticator = request.app.state.authenticator
        return await authenticator.access(credentials.credentials if credentials else None, scope)

    return access


async def caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    """A dependency: who is calling, whatever it may do (401 for no or an unknown key once
    keys exist)."""
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.principal(credentials.credentials if credentials else None)


def tenant_for(scope: Scope) -> Callable[..., Awaitable[str]]:
    """A dependency: the caller's tenant, if the caller holds `scope` (401/403 otherwise)."""
    check = access_for(scope)

    async def tenant(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> str:
        return (await check(request, credentials)).tenant_id

    return tenant
