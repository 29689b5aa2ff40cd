"""Live-stream tests run the app with quick heartbeats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tamma_sync.settings import Settings
from tests.support.http import TLS

HEARTBEAT_SECONDS = 0.3


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url, data_dir=tmp_path, sse_heartbeat_seconds=HEARTBEAT_SECONDS
    )


@pytest.fixture
async def http(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server_url, timeout=10, verify=TLS) as client:
        yield client
