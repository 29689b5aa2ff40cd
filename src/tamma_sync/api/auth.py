"""Who is calling: API keys (`Authorization: Bearer <key>`), their tenant and scopes.

With no API key in the database the server is open — but only on loopback, unless started
with `--insecure` (see `cli.serve`); once a key exists every request needs one. Each route
asks for one scope and gets the caller's tenant back, so every query is tenant-scoped.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tamma_sync.api.errors import ApiError
from tamma_sync.models import DEFAULT_TENANT_ID, ApiKey, Scope
from tamma_sync.store import Store

log = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, description="An API key from `tamma-sync keys create`.")


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    scopes: frozenset[Scope]
    key_id: str | None
    """None when the server is open (no API keys)."""


OPEN = Principal(tenant_id=DEFAULT_TENANT_ID, scopes=frozenset(Scope), key_id=None)


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

    async def principal(self, token: str | None) -> Principal:
        if not await self._enforced():
            return OPEN
        if not token:
            raise ApiError(401, "Not authenticated")
        key = await self._verify(token)
        if key is None:
            raise ApiError(401, "Not authenticated")
        return Principal(tenant_id=key.tenant_id, scopes=frozenset(key.scopes), key_id=key.id)

    async def _enforced(self) -> bool:
        if self._keys_required:
            return True
        exist, until = self._keys_exist
        if time.monotonic() >= until:
            exist = await self._store.has_active_api_keys()
            self._keys_exist = (exist, time.monotonic() + self._cache_seconds)
        return exist

    async def _verify(self, token: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self._verified.get(token)
        if cached is not None and now < cached[1]:
            return cached[0]
        key = await self._store.verify_api_key(token)
        if len(self._verified) > 10_000:  # keep the cache bounded against junk tokens
            self._verified.clear()
        self._verified[token] = (key, now + self._cache_seconds)
        return key


def tenant_for(scope: Scope) -> Callable[..., Awaitable[str]]:
    """A dependency: the caller's tenant, if the caller holds `scope` (401/403 otherwise)."""

    async def tenant(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> str:
        authenticator: Authenticator = request.app.state.authenticator
        principal = await authenticator.principal(credentials.credentials if credentials else None)
        if scope not in principal.scopes:
            raise ApiError(403, "Insufficient permissions", required=scope.value)
        return principal.tenant_id

    return tenant
