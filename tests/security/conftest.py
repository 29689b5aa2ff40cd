"""A server with API keys: two tenants with every scope, and one key per single scope."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tamma_sync.api import create_app
from tamma_sync.models import Scope
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tests.support.http import TLS
from tests.support.server import serve_in_thread

TENANT_A = "tenant-a"
TENANT_B = "tenant-b"


@dataclass(frozen=True)
class Keys:
    a: str
    """Tenant A, every scope."""
    b: str
    """Tenant B, every scope."""
    only: dict[Scope, str]
    """Tenant A, one scope each."""
    all_but: dict[Scope, str]
    """Tenant A, every scope but one."""
    revoked: str


async def _create_keys(database_url: str) -> Keys:
    store = Store.from_url(database_url)
    try:
        await store.migrate()
        _, a = await store.create_api_key(TENANT_A, list(Scope), "a")
        _, b = await store.create_api_key(TENANT_B, list(Scope), "b")
        only = {scope: (await store.create_api_key(TENANT_A, [scope]))[1] for scope in Scope}
        all_but = {
            scope: (await store.create_api_key(TENANT_A, [s for s in Scope if s is not scope]))[1]
            for scope in Scope
        }
        revoked_key, revoked = await store.create_api_key(TENANT_A, list(Scope))
        await store.revoke_api_key(revoked_key.id)
    finally:
        await store.close()
    return Keys(a=a, b=b, only=only, all_but=all_but, revoked=revoked)


@pytest.fixture
def keys(database_url: str) -> Keys:
    return asyncio.run(_create_keys(database_url))


@pytest.fixture
def keyed_url(keys: Keys, database_url: str, tmp_path: Path) -> Iterator[str]:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        auth_cache_seconds=0,
        sse_heartbeat_seconds=0.2,
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


def client_for(url: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=10, verify=TLS)
