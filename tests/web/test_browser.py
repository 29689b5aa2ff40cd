"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright)
against a real server on loopback: live updates without reloads, resume after the
server ends the stream, API keys, colours and the phone layout.

Skipped when /usr/bin/chromium is missing, unless TAMMA_SYNC_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Locator,
    Page,
    Request,
    Response,
    Route,
    expect,
)

from tamma_sync.api import create_app
from tamma_sync.api.body_cache import BodyCache
from tamma_sync.api.routes.web import page_data, render_page
from tamma_sync.models import DEFAULT_TENANT_ID
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tests.conftest import run_async
from tests.support.server import serve_in_thread
from tests.web.conftest import LIVE_MS, PHONE, SYNC_ERROR, Keyed, Seeded, seed

#: dashboard.js polls every 5 s; a poll may have just happened, so allow one more.
POLL_MS = 5_000 + LIVE_MS
#: The sections the script re-renders from the API, and what the server rendered.
#: What the panels say while the page waits for an API key (dashboard.js).
KEY_NEEDED = "Needs an API key (see above)."
SECTIONS = ["tiles", "sync-banners", "instances", "workflows", "sources", "engines", "events"]
#: Each element as [tag, classes, other attributes, children]; <time>s vary with the clock.
SHAPE_JS = """([html, ids]) => {
  const shape = (node) => {
    if (!node) return null;
    if (node.nodeType === Node.TEXT_NODE) {
      return node.textContent.replace(/\\s+/g, ' ').trim() || null;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return null;
    if (node.tagName === 'TIME') return 'TIME';
    const attrs = [...node.attributes].filter((a) => a.name !== 'class')
      .map((a) => `${a.name}=${a.value}`);
    const children = [...node.childNodes].map(shape).filter((x) => x);
    return [node.tagName, [...node.classList].sort(), attrs.sort(), children];
  };
  const server = new DOMParser().parseFromString(html, 'text/html');
  const both = (id) => [shape(server.getElementById(id)), shape(document.getElementById(id))];
  return ids.flatMap((id) => [both(id), both(`${id}-empty`)]).filter(([s]) => s);
}"""


@pytest.fixture
def database_url(sqlite_database_url: str) -> str:
    """SQLite only: the script behaves the same on either database; the page the server
    renders from each is compared in test_page.py."""
    return sqlite_database_url


def instance_row(page: Page, instance_id: str) -> Locator:
    return page.locator(f'#instances > li[data-id="{instance_id}"]')


def test_changes_arrive_live_and_engines_after_a_poll(
    seeded: Seeded, server_url: str, page: Page
) -> None:
    client = seeded.client
    page.goto(server_url)
    # What the server rendered, before any poll.
    expect(page.locator("#sync-banners")).to_contain_text(SYNC_ERROR)
    expect(page.locator('#engines > li[data-id="seed-engine"]')).to_contain_text("Tamma engine")
    expect(page.locator("#workflows")).to_contain_text("Tamma Autonomous Mentorship")
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    page.evaluate("window.notReloaded = true")

    created = client.post(
        "/api/workflows/instances",
        json={"id": "live-1", "definitionId": "mentorship", "status": "Running"},
    )
    assert created.status_code == 201
    first = page.locator("#instances > li").first
    expect(first).to_have_attribute("data-id", "live-1", timeout=LIVE_MS)
    expect(first.locator(".badge")).to_have_text("Executing")

    client.put(
        "/api/workflows/instances/live-1",
        json={"status": "completed", "currentActivity": "complete-log"},
    )
    expect(first.locator(".badge")).to_have_text("Finished", timeout=LIVE_MS)
    expect(first.locator(".activity")).to_have_text("complete-log")
    expect(instance_row(page, "live-1")).to_have_count(1)

    client.delete("/api/workflows/instances/elsa-0")
    expect(instance_row(page, "elsa-0")).to_have_class(re.compile(r"\bdeleted\b"), timeout=LIVE_MS)
    expect(page.locator("#instances > li").first).to_have_attribute("data-id", "elsa-0")

    report = {"name": "Late engine", "state": "running", "heartbeatIntervalSeconds": 30}
    assert client.put("/api/engines/late-engine", json=report).status_code == 201
    late = page.locator('#engines > li[data-id="late-engine"]')
    expect(late).to_contain_text("Late engine", timeout=POLL_MS)
    expect(late).to_contain_text("online")
    assert page.evaluate("window.notReloaded") is True, "no reload happened"

    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scroll"


def test_the_stream_resumes_with_last_event_id_after_the_server_ends_it(
    settings: Settings, page: Page
) -> None:
    """With room for one change per subscriber, a batch of five overflows the stream: the
    server ends it with `retry:`, and the page resumes from its last id, missing nothing."""
    small = settings.model_copy(update={"sse_queue_size": 1})
    with serve_in_thread(create_app(small)) as url, httpx.Client(base_url=url) as client:
        streams: list[Request] = []
        page.on("request", lambda r: streams.append(r) if "/api/events" in r.url else None)
        page.goto(url)
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        client.post("/api/workflows/instances", json={"id": "first", "definitionId": "wf"})
        expect(instance_row(page, "first")).to_have_count(1)
        batch = {
            "sourceId": "elsa",
            "instances": [{"id": f"batch-{n}", "definitionId": "wf"} for n in range(5)],
        }
        assert client.post("/api/sync/batch", json=batch).status_code == 200
        expect(page.locator("#instances > li[data-id^=batch-]")).to_have_count(5)
        expect(page.locator("#instances > li").first).to_have_attribute("data-id", "batch-4")
        resumed_from = [r.headers.get("last-event-id") for r in streams]
        assert len(resumed_from) == 2, "the page reconnected once"
        assert resumed_from[0] == "0", "the first stream resumes from the page's snapshot"
        assert int(str(resumed_from[1])) > 0, "the second from the last change it received"


def test_a_reset_stream_makes_the_page_load_the_list_again(settings: Settings, page: Page) -> None:
    """The stream ends (a batch overflows its queue) and the page resumes from an id the
    server never gave, as after a database restored from a backup: the server answers
    `reset`, and the page loads the changes it could not be sent."""
    small = settings.model_copy(update={"sse_queue_size": 1})
    with serve_in_thread(create_app(small)) as url, httpx.Client(base_url=url) as client:
        streams: list[str | None] = []

        def ahead_on_resume(route: Route, request: Request) -> None:
            streams.append(request.headers.get("last-event-id"))
            if len(streams) == 1:
                route.continue_()
            else:
                route.continue_(headers={**request.headers, "last-event-id": str(10**15)})

        page.route("**/api/events*", ahead_on_resume)
        page.goto(url)
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        # Shown once the stream has subscribed: "live" may show before (the page goes live
        # as the response begins), and a batch written then reaches the page as the
        # stream's backfill, which no queue bounds.
        client.post("/api/workflows/instances", json={"id": "first", "definitionId": "wf"})
        expect(instance_row(page, "first")).to_have_count(1)
        batch = {
            "sourceId": "elsa",
            "instances": [{"id": f"batch-{n}", "definitionId": "wf"} for n in range(5)],
        }
        assert client.post("/api/sync/batch", json=batch).status_code == 200
        expect(page.locator("#instances > li[data-id^=batch-]")).to_have_count(5)
        assert len(streams) >= 2, "the page resumed, from an id ahead of the log"


def test_with_api_keys_the_page_asks_for_one_and_draws_what_the_server_would(
    keyed: Keyed, settings: Settings, page: Page
) -> None:
    """Once keys exist the server sends the shell; the script, holding the key the user
    gives it, draws what the server draws for an open server, and goes live."""
    headers = {"Authorization": f"Bearer {keyed.key}"}
    with httpx.Client(base_url=keyed.url, headers=headers, timeout=10) as client:
        seed(client)
        open_page = _render_with_data(settings, f"{keyed.url}/")
        page.goto(keyed.url)
        expect(page.locator("#key-message")).to_be_visible()
        expect(page.locator("#key-form")).to_have_class("keyform alert")
        expect(page.locator("#live")).to_have_attribute("data-state", "key")
        expect(page.locator("#engines")).to_have_text(KEY_NEEDED)

        page.fill("#key-input", keyed.view_only)
        page.click("#key-form button[type=submit]")
        expect(page.locator("#key-scope")).to_contain_text("dashboard:view")
        expect(page.locator("#key-message")).to_be_hidden()

        page.fill("#key-input", keyed.key)
        page.click("#key-form button[type=submit]")
        expect(page.locator("#key-form")).to_be_hidden()
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        expect(page.locator("#instances > li")).to_have_count(4)
        expect(page.locator('#engines > li[data-id="seed-engine"]')).to_be_visible()
        assert page.evaluate("localStorage.getItem('tamma-sync.apiKey')") == keyed.key

        for server_shape, script_shape in page.evaluate(SHAPE_JS, [open_page, SECTIONS]):
            assert script_shape == server_shape

        client.post("/api/workflows/instances", json={"id": "keyed", "definitionId": "x"})
        expect(page.locator("#instances > li").first).to_have_attribute("data-id", "keyed")


def test_the_workflows_poll_revalidates_the_list_it_holds(
    seeded: Seeded, server_url: str, page: Page
) -> None:
    """The list of workflows is the page's largest poll: the browser sends back its ETag and
    gets an empty 304 while the catalog is unchanged, and the whole new list once it moved.
    (The browser hands the page its cached 200 either way, so the server's count of 304s
    says what went over the wire.)"""
    page.goto(server_url)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")

    def poll_workflows() -> Response:
        """Poll now, as the page does when its tab comes back into view, and wait until it
        drew what it got (a poll asked for while one is under way is skipped)."""
        drawn = page.get_attribute("#updated", "data-ms")
        with page.expect_response(lambda r: "/api/dashboard/workflows" in r.url) as polled:
            page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        page.wait_for_function(
            "drawn => document.getElementById('updated').dataset.ms !== drawn", arg=drawn
        )
        return polled.value

    def answered(status: int) -> int:
        labels = f'method="GET",route="/api/dashboard/workflows",status="{status}"'
        for line in seeded.client.get("/metrics").text.splitlines():
            if line.startswith(f"tamma_sync_http_requests_total{{{labels}}} "):
                return int(float(line.split()[-1]))
        return 0

    first = poll_workflows()
    tag = first.headers["etag"]
    assert (answered(200), answered(304)) == (1, 0)
    again = poll_workflows()
    assert again.request.all_headers().get("if-none-match") == tag
    assert (answered(200), answered(304)) == (1, 1)
    expect(page.locator("#workflows")).to_contain_text("Tamma Autonomous Mentorship")

    batch = {"sourceId": "elsa-prod", "definitions": [{"id": "intake", "name": "Intake review"}]}
    assert seeded.client.post("/api/sync/batch", json=batch).status_code == 200
    moved = poll_workflows()
    assert moved.headers["etag"] != tag
    assert (answered(200), answered(304)) == (2, 1)
    expect(page.locator("#workflows")).to_contain_text("Intake review")
    expect(page.locator("#workflows")).to_contain_text("Tamma Autonomous Mentorship")


def _render_with_data(settings: Settings, base_url: str) -> str:
    """The page as an open server renders it, from the same database."""

    async def render() -> str:
        store = Store.from_url(settings.resolved_database_url)
        try:
            return render_page(base_url, await page_data(store, BodyCache(), DEFAULT_TENANT_ID))
        finally:
            await store.close()

    return run_async(render())


def test_status_colours_are_tammas_and_case_insensitive(server_url: str, page: Page) -> None:
    page.goto(server_url)
    groups = {
        "green": ["completed", "SUCCEEDED", "Success", "Finished"],
        "red": ["failed", "Error", "FAULTED"],
        "blue": ["running", "Executing", "syncing"],
        "yellow": ["paused", "AWAITING_APPROVAL", "Suspended"],
        "grey": ["Unknown", "cancelled", "idle"],
    }
    colours = page.evaluate(
        """(groups) => Object.fromEntries(Object.entries(groups).map(([tone, words]) =>
          [tone, [...new Set(words.map((word) => {
            const badge = document.createElement('span');
            badge.className = 'badge';
            badge.dataset.s = word;
            document.body.append(badge);
            const colour = getComputedStyle(badge).backgroundColor;
            badge.remove();
            return colour;
          }))]]))""",
        groups,
    )
    assert all(len(found) == 1 for found in colours.values()), colours
    assert len({found[0] for found in colours.values()}) == len(groups), "five distinct tones"


def test_without_a_key_every_panel_asks_for_one(keyed: Keyed, page: Page) -> None:
    """The server sends the shell; the first 401 brings up the key form, and no panel is
    left saying "Loading…"."""
    page.goto(keyed.url)
    expect(page.locator("#key-message")).to_be_visible()
    expect(page.locator("#key-input")).to_be_focused()
    expect(page.locator("body")).not_to_contain_text("Loading…")
    placeholders = page.locator(".placeholder")
    expect(placeholders).to_have_count(len(["tiles", "trends", *SECTIONS[2:]]))
    for n in range(placeholders.count()):
        expect(placeholders.nth(n)).to_have_text(KEY_NEEDED)


def test_on_a_phone_the_sync_and_the_engines_are_within_two_screens(
    seeded: Seeded, server_url: str, page: Page
) -> None:
    """A full list of changes (50 rows) must not push the health of the sync and of the
    engines down the page."""
    page.set_viewport_size(PHONE)
    page.goto(server_url)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    batch = {
        "sourceId": "elsa-prod",
        "instances": [{"id": f"many-{n}", "definitionId": "mentorship"} for n in range(60)],
    }
    assert seeded.client.post("/api/sync/batch", json=batch).status_code == 200
    expect(page.locator("#instances > li")).to_have_count(50)
    for panel in ("#sources", "#engines"):
        bottom = page.evaluate(
            "(id) => { const r = document.querySelector(id).getBoundingClientRect();"
            " return r.bottom + window.scrollY; }",
            panel,
        )
        assert bottom <= 2 * PHONE["height"], f"{panel} ends {bottom} px down"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_the_api_docs_render_without_the_internet(
    sqlite_database_url: str, tmp_path: Path, page: Page
) -> None:
    """Swagger UI comes from the package: with every other host unreachable, /docs still
    shows the operations, and asks nothing of any other server."""
    settings = Settings(database_url=sqlite_database_url, data_dir=tmp_path)
    with serve_in_thread(create_app(settings)) as url:
        elsewhere: list[str] = []

        def only_this_server(route: Route, request: Request) -> None:
            if request.url.startswith(f"{url}/") or request.url.startswith("data:"):
                route.continue_()
            else:
                elsewhere.append(request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.goto(f"{url}/docs")
        expect(page.locator(".opblock").first).to_be_visible()
        assert page.locator(".opblock").count() > 10
        assert elsewhere == []
        assert httpx.get(f"{url}/redoc").status_code == 404, "no ReDoc: it needs a CDN"


def test_an_unreachable_elsa_source_is_not_shown_online(
    sqlite_database_url: str, tmp_path: Path, page: Page
) -> None:
    """The sync goes on reporting a source whose ELSA does not answer: its engine is
    failing, not "online, last seen just now", and counts as offline."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        elsa_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    settings = Settings(
        database_url=sqlite_database_url, data_dir=tmp_path, elsa_url=elsa_url, poll_interval=0.2
    )
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        deadline = time.monotonic() + 30  # the first cycle retries its first request 5 times
        while (engine := client.get("/api/engines/elsa")).status_code == 404:
            assert time.monotonic() < deadline, "the sync reported no failed cycle"
            time.sleep(0.2)
        assert (engine.json()["state"], engine.json()["online"]) == ("error", False)
        page.goto(url)
        card = page.locator('#engines > li[data-id="elsa"]')

        def shown_failing() -> None:
            expect(card.locator(".liveness")).to_have_text("failing")
            expect(card.locator(".liveness")).to_have_attribute("data-online", "false")
            expect(card).to_contain_text("never synced")
            expect(card).not_to_contain_text("last seen")
            expect(card.locator(".error-text")).not_to_be_empty()
            online = page.locator(".tile", has_text="Engines online").locator(".value")
            expect(online).to_have_text("0 / 1")

        shown_failing()  # as the server drew it
        # Poll now (as when the tab comes back into view) and wait until the script drew it.
        drawn = page.get_attribute("#updated", "data-ms")
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        page.wait_for_function(
            "drawn => document.getElementById('updated').dataset.ms !== drawn", arg=drawn
        )
        shown_failing()
