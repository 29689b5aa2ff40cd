"""What the web tests share: a database with something in every panel, a server that
enforces API keys, and a headless chromium (Debian's, driven by Playwright).

Browser tests are skipped when /usr/bin/chromium is missing, unless
TAMMA_SYNC_REQUIRE_BROWSER=1 (CI)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from tamma_sync.api import create_app
from tamma_sync.models import DEFAULT_TENANT_ID, Scope
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tests.conftest import run_async
from tests.support.server import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER_ENV = "TAMMA_SYNC_REQUIRE_BROWSER"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Milliseconds for anything the page does on its own (a live change, a reconnect).
LIVE_MS = 10_000
#: The phone the layout is measured on.
PHONE = ViewportSize(width=390, height=844)

SYNC_ERROR = "ELSA answered 503 Service Unavailable for POST /elsa/api/workflow-instances"


@dataclass(frozen=True)
class Seeded:
    client: httpx.Client
    error_at: int


@dataclass(frozen=True)
class Keyed:
    url: str
    key: str
    """Every scope."""
    view_only: str
    """Only `workflows:view`: not enough for the dashboard."""


async def _create_keys(database_url: str) -> tuple[str, str]:
    store = Store.from_url(database_url)
    try:
        await store.migrate()
        _, key = await store.create_api_key(DEFAULT_TENANT_ID, list(Scope), "web")
        _, view_only = await store.create_api_key(DEFAULT_TENANT_ID, [Scope.WORKFLOWS_VIEW])
    finally:
        await store.close()
    return key, view_only


@pytest.fixture
def keyed(settings: Settings) -> Iterator[Keyed]:
    """A server whose database holds API keys, so that every API call needs one."""
    key, view_only = run_async(_create_keys(settings.resolved_database_url))
    with serve_in_thread(create_app(settings)) as url:
        yield Keyed(url=url, key=key, view_only=view_only)


@pytest.fixture
def seeded(client: httpx.Client) -> Seeded:
    return seed(client)


def seed(client: httpx.Client) -> Seeded:
    """A failing ELSA source with a definition and instances, a Tamma engine with events."""
    now = int(time.time() * 1000)
    batch = {
        "sourceId": "elsa-prod",
        "definitions": [{"id": "mentorship", "name": "Tamma Autonomous Mentorship", "version": 3}],
        "instances": [
            {
                "id": f"elsa-{n}",
                "definitionId": "mentorship",
                "status": "Running",
                "subStatus": "Suspended",
                "currentActivity": "await-review",
                "createdAt": now - 60_000 + n,
                "updatedAt": now - 30_000 + n,
            }
            for n in range(3)
        ],
        "state": {
            "sourceId": "elsa-prod",
            "phase": "error",
            "url": "https://elsa.example.com",
            "lastError": SYNC_ERROR,
            "lastErrorAt": now - 5_000,
            "pollIntervalSeconds": 30,
        },
    }
    assert client.post("/api/sync/batch", json=batch).status_code == 200
    engine = {
        "name": "Tamma engine",
        "kind": "tamma",
        "version": "0.6.0",
        "state": "AWAITING_APPROVAL",
        "stats": {"issuesProcessed": 3, "startedAt": now - 3_600_000},
        "heartbeatIntervalSeconds": 30,
    }
    assert client.put("/api/engines/seed-engine", json=engine).status_code == 201
    event = {"type": "PR_CREATED", "issueNumber": 42, "data": {"prNumber": 77}}
    assert client.post("/api/engines/seed-engine/events", json=[event]).status_code == 200
    created = client.post(
        "/api/workflows/instances",
        json={"id": "legacy-1", "definitionId": "mentorship", "status": "pending"},
    )
    assert created.status_code == 201
    return Seeded(client=client, error_at=now - 5_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium for a module's tests (each gets a fresh context, a profile of
    its own); never a downloaded browser."""
    if not CHROMIUM.exists():
        if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
            pytest.fail(f"{REQUIRE_BROWSER_ENV}=1 but {CHROMIUM} is missing")
        pytest.skip(f"browser tests need {CHROMIUM} (Debian's chromium package)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a context of its own: no cookies, storage or cache from another test."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        browser_page = context.new_page()
        browser_page.set_default_timeout(LIVE_MS)
        errors: list[str] = []
        browser_page.on("pageerror", lambda error: errors.append(str(error)))
        browser_page.on(
            "console",
            lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        yield browser_page
        assert errors == [], "the script threw, or broke the page's CSP"
    finally:
        context.close()
