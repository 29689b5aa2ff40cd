"""The instances explorer and the instance page in a real browser (Debian's chromium,
driven by Playwright) against a real server: filters that narrow the list and live in the
URL, keyset "More", live rows, the instance's timeline following its changes, a phone."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tamma_sync.api import create_app
from tamma_sync.settings import Settings
from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tests.support.server import serve_in_thread
from tests.web.conftest import LIVE_MS, PHONE, Keyed


@pytest.fixture
def database_url(sqlite_database_url: str) -> str:
    """SQLite only: what these pages show does not depend on the database, and the API they
    call answers the same on both (tests/api)."""
    return sqlite_database_url


#: (id, definition, sub-status): two definitions, every ending, ids with two prefixes.
INSTANCES = [
    ("order-1", "orders", "Executing"),
    ("order-2", "orders", "Faulted"),
    ("order-3", "orders", "Faulted"),
    ("order-4", "orders", "Suspended"),
    ("order-5", "orders", "Finished"),
    ("refund-1", "refunds", "Faulted"),
    ("refund-2", "refunds", "Executing"),
]


def _seed(client: httpx.Client) -> None:
    for definition, name in (("orders", "Order intake"), ("refunds", "Refunds")):
        made = client.post("/api/workflows/definitions", json={"id": definition, "name": name})
        assert made.status_code == 201, made.text
    for n, (instance_id, definition, sub_status) in enumerate(INSTANCES):
        created = client.post(
            "/api/workflows/instances",
            json={
                "id": instance_id,
                "definitionId": definition,
                "subStatus": sub_status,
                "status": "Finished" if sub_status in ("Faulted", "Finished") else "Running",
                "createdAt": 1_700_000_000_000 + n * 1000,
                "updatedAt": 1_700_000_000_000 + n * 1000,
            },
        )
        assert created.status_code == 201, created.text


def _rows(page: Page) -> Locator:
    return page.locator("#results > li[data-id]")


def _shown(page: Page, ids: list[str]) -> None:
    """Exactly `ids` are listed, in this order."""
    expect(_rows(page)).to_have_count(len(ids), timeout=LIVE_MS)
    assert _rows(page).evaluate_all("rows => rows.map(r => r.dataset.id)") == ids


def test_filters_narrow_the_list_live_in_the_url_and_survive_a_reload(
    client: httpx.Client, server_url: str, page: Page
) -> None:
    _seed(client)
    page.goto(f"{server_url}/instances")
    _shown(page, [i for i, _, _ in reversed(INSTANCES)])  # newest update first
    expect(page.locator("#count")).to_contain_text("7 match")

    page.select_option('select[name="definitionId"]', "orders")
    page.check('input[name="subStatus"][value="Faulted"]')
    page.get_by_role("button", name="Apply").click()
    _shown(page, ["order-3", "order-2"])
    expect(page.locator("#count")).to_contain_text("2 match")
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"definitionId": ["orders"], "subStatus": ["Faulted"]}

    page.reload()
    _shown(page, ["order-3", "order-2"])
    expect(page.locator('select[name="definitionId"]')).to_have_value("orders")
    expect(page.locator('input[name="subStatus"][value="Faulted"]')).to_be_checked()
    expect(page.locator('input[name="subStatus"][value="Executing"]')).not_to_be_checked()

    page.go_back()  # the unfiltered view it came from
    _shown(page, [i for i, _, _ in reversed(INSTANCES)])

    # A folded filter in use unfolds, showing its value.
    page.goto(f"{server_url}/instances?idPrefix=refund")
    _shown(page, ["refund-2", "refund-1"])
    expect(page.locator('input[name="idPrefix"]')).to_be_visible()
    expect(page.locator('input[name="idPrefix"]')).to_have_value("refund")


def test_more_follows_the_cursor_and_rows_link_to_the_instance(
    client: httpx.Client, server_url: str, page: Page
) -> None:
    _seed(client)
    page.goto(f"{server_url}/instances?orderBy=createdAt&orderDirection=asc&pageSize=3")
    _shown(page, ["order-1", "order-2", "order-3"])
    expect(page.locator("#count")).to_contain_text("7 match · 3 shown")
    page.get_by_role("button", name="More").click()
    _shown(page, ["order-1", "order-2", "order-3", "order-4", "order-5", "refund-1"])
    page.get_by_role("button", name="More").click()
    _shown(page, [i for i, _, _ in INSTANCES])
    expect(page.get_by_role("button", name="More")).to_be_hidden()

    page.get_by_role("link", name="refund-1").click()
    expect(page).to_have_url(re.compile(r"/instance\?id=refund-1$"))
    expect(page.locator("#state .badge")).to_have_text("Faulted")


def test_an_instance_that_comes_to_match_appears_live(
    client: httpx.Client, server_url: str, page: Page
) -> None:
    _seed(client)
    page.goto(f"{server_url}/instances?subStatus=Faulted")
    _shown(page, ["refund-1", "order-3", "order-2"])
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    put = client.put(
        "/api/workflows/instances/order-1",
        json={"subStatus": "Faulted", "updatedAt": 1_800_000_000_000},
    )
    assert put.status_code == 200, put.text
    expect(_rows(page).first).to_have_attribute("data-id", "order-1", timeout=LIVE_MS)
    expect(page.locator("#count")).to_contain_text("4 match")
    # One that does not match stays out.
    client.put("/api/workflows/instances/refund-2", json={"subStatus": "Suspended"})
    client.put("/api/workflows/instances/order-4", json={"subStatus": "Faulted"})
    expect(_rows(page).first).to_have_attribute("data-id", "order-4", timeout=LIVE_MS)
    expect(page.locator('#results > li[data-id="refund-2"]')).to_have_count(0)


#: Holds back what `/api/events` streams, after its headers, until `releaseStreams()`: a
#: slow network between the page and the real server.
HOLD_STREAMS_JS = """(() => {
  const fetched = window.fetch;
  let release;
  const released = new Promise((resolve) => { release = resolve; });
  window.releaseStreams = () => release();
  window.streamsHeld = 0;
  window.fetch = async (...args) => {
    const response = await fetched(...args);
    if (!String(args[0]).includes('api/events') || !response.body) return response;
    window.streamsHeld += 1;
    const reader = response.body.getReader();
    const body = new ReadableStream({
      async pull(controller) {
        await released;
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
})();"""


def test_a_new_stream_is_shown_live_only_once_the_server_has_subscribed_it(
    client: httpx.Client, server_url: str, page: Page
) -> None:
    """The explorer's stream starts fresh (no Last-Event-ID): until its `: connected`
    arrives, changes may be missed and the list is not loaded, so the page must not say
    "live" on the stream's headers alone."""
    _seed(client)
    page.add_init_script(HOLD_STREAMS_JS)
    page.goto(f"{server_url}/instances?subStatus=Faulted")
    page.wait_for_function("window.streamsHeld === 1", timeout=LIVE_MS)
    page.wait_for_timeout(300)  # what the page does on the headers, it has done by now
    expect(page.locator("#live")).to_have_attribute("data-state", "connecting")
    page.evaluate("window.releaseStreams()")
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    _shown(page, ["refund-1", "order-3", "order-2"])


def test_the_status_text_filter_matches_what_writers_sent_and_follows_changes(
    client: httpx.Client, server_url: str, page: Page
) -> None:
    """The original's writers send free text (`pending`, `awaiting-review`): the explorer
    finds it exactly, keeps it in the URL, and adds an instance that comes to say it."""
    _seed(client)
    for instance_id in ("order-4", "refund-2"):
        put = client.put(f"/api/workflows/instances/{instance_id}", json={"status": "on-hold"})
        assert put.status_code == 200, put.text
    page.goto(f"{server_url}/instances")
    page.locator("#more-filters > summary").click()
    page.fill('input[name="statusText"]', "on-hold")
    page.get_by_role("button", name="Apply").click()
    _shown(page, ["refund-2", "order-4"])
    assert parse_qs(urlsplit(page.url).query) == {"statusText": ["on-hold"]}
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    client.put("/api/workflows/instances/order-5", json={"status": "On-hold"})  # not it
    client.put("/api/workflows/instances/order-1", json={"status": "on-hold"})
    expect(_rows(page).first).to_have_attribute("data-id", "order-1", timeout=LIVE_MS)
    expect(page.locator('#results > li[data-id="order-5"]')).to_have_count(0)


def test_the_instance_page_shows_its_fields_variables_and_a_live_timeline(
    client: httpx.Client, server_url: str, page: Page
) -> None:
    created = client.post(
        "/api/workflows/instances",
        json={
            "id": "loan-7",
            "definitionId": "loans",
            "status": "Running",
            "subStatus": "Executing",
            "currentActivity": "Check credit",
            "variables": {"applicant": {"name": "Ada", "scores": [710, 695]}, "amount": 1200},
            "createdAt": 1_700_000_000_000,
            "updatedAt": 1_700_000_000_000,
        },
    )
    assert created.status_code == 201, created.text
    page.goto(f"{server_url}/instance?id=loan-7")
    expect(page.locator("#state .badge")).to_have_text("Executing")
    expect(page.locator('[data-field="currentActivity"] dd')).to_have_text("Check credit")
    expect(page.locator("#variables")).to_contain_text("Ada")
    expect(page.locator("#variables")).to_contain_text("710")
    timeline = page.locator("#timeline > li[data-seq]")
    expect(timeline).to_have_count(1)
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=LIVE_MS)

    client.put(
        "/api/workflows/instances/loan-7",
        json={
            "subStatus": "Suspended",
            "currentActivity": "Await signature",
            "updatedAt": 1_700_000_090_000,
        },
    )
    expect(timeline).to_have_count(2, timeout=LIVE_MS)
    expect(timeline.nth(0)).to_contain_text("for 1 min 30 s")  # by the source's clock
    expect(timeline.nth(1).locator(".badge")).to_have_text("Suspended")
    expect(timeline.nth(1)).to_contain_text("changed: currentActivity, subStatus")
    expect(page.locator("#state .badge")).to_have_text("Suspended")

    client.put(
        "/api/workflows/instances/loan-7",
        json={"status": "Finished", "subStatus": "Finished", "updatedAt": 1_700_000_100_000},
    )
    expect(timeline).to_have_count(3, timeout=LIVE_MS)
    expect(timeline.nth(1)).to_contain_text("for 10 s")
    expect(page.locator("#state .badge")).to_have_text("Finished")
    expect(page.locator("#live")).to_have_attribute("data-state", "ended", timeout=LIVE_MS)
    expect(page.locator("#kept")).to_contain_text("3 changes observed · history kept 7 days")


def test_on_a_phone_the_explorer_fits_the_width_and_lists_within_the_first_screen(
    client: httpx.Client, server_url: str, page: Page
) -> None:
    _seed(client)
    page.set_viewport_size(PHONE)
    page.goto(f"{server_url}/instances")
    _shown(page, [i for i, _, _ in reversed(INSTANCES)])
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    first = _rows(page).first.bounding_box()
    assert first is not None and first["y"] < PHONE["height"], "the list starts on screen one"


def test_with_api_keys_the_explorer_asks_for_one_then_lists(keyed: Keyed, page: Page) -> None:
    with httpx.Client(
        base_url=keyed.url, headers={"Authorization": f"Bearer {keyed.key}"}, timeout=10
    ) as client:
        _seed(client)
    page.goto(f"{keyed.url}/instances?definitionId=refunds")
    expect(page.locator("#key-message")).to_be_visible()
    expect(page.locator("#results .placeholder")).to_have_text("Needs an API key (see above).")
    page.fill("#key-input", keyed.key)
    page.get_by_role("button", name="Save").click()
    _shown(page, ["refund-2", "refund-1"])
    expect(page.locator('select[name="definitionId"] option[value="refunds"]')).to_have_text(
        "Refunds (refunds)"
    )


def test_the_definition_page_shows_where_running_instances_wait(
    client: httpx.Client, server_url: str, page: Page
) -> None:
    def at(x: int, y: int, activity_id: str) -> dict[str, object]:
        position = {"position": {"x": x, "y": y}, "size": {"width": 180, "height": 50}}
        return {"id": activity_id, "type": "Elsa.Activity", "metadata": {"designer": position}}

    def link(source: str, target: str) -> dict[str, object]:
        return {"source": {"activity": source, "port": "Done"}, "target": {"activity": target}}

    activities = [at(0, 0, "intake"), at(300, 0, "review"), at(600, 0, "ship")]
    definition = {
        "id": "orders",
        "name": "Order intake",
        "version": 2,
        "activities": activities,
        "connections": [link("intake", "review"), link("review", "ship")],
    }
    # As the sync writes it (a POST of the original's route drops connections).
    made = client.post("/api/sync/batch", json={"sourceId": "elsa", "definitions": [definition]})
    assert made.status_code == 200, made.text
    placed = [
        ("o1", "Executing", "intake"),
        ("o2", "Suspended", "review"),
        ("o3", "Suspended", "review"),
        ("o4", "Executing", "review"),
        ("o5", "Finished", "review"),  # ended: no longer waits anywhere
    ]
    for instance_id, sub_status, activity in placed:
        body = {
            "id": instance_id,
            "definitionId": "orders",
            "subStatus": sub_status,
            "currentActivity": activity,
        }
        assert client.post("/api/workflows/instances", json=body).status_code == 201

    page.goto(f"{server_url}/definition?id=orders")
    expect(page.locator("#definition-name")).to_have_text("Order intake")
    edges = page.locator("#flow line.edge")
    expect(edges).to_have_count(2)
    assert edges.evaluate_all("es => es.map(e => [e.dataset.source, e.dataset.target])") == [
        ["intake", "review"],
        ["review", "ship"],
    ]
    review = page.locator('#flow g[data-activity="review"]')
    expect(review.locator("text.count")).to_have_text("3")
    expect(page.locator('#flow g[data-activity="intake"] text.count')).to_have_text("1")
    expect(page.locator('#flow g[data-activity="ship"] text.count')).to_have_count(0)
    expect(page.locator("#running")).to_have_text("4 running")
    expect(page.locator('#activities tr[data-activity="review"]')).to_contain_text("3")

    # A count leads to exactly those instances.
    page.locator('#activities tr[data-activity="review"] a').click()
    _shown(page, ["o4", "o3", "o2"])

    # And the page follows: one more at "ship" shows on the next poll.
    client.put("/api/workflows/instances/o1", json={"currentActivity": "ship"})
    page.go_back()
    expect(page.locator('#flow g[data-activity="ship"] text.count')).to_have_text(
        "1", timeout=LIVE_MS
    )


def test_an_instance_from_elsa_links_to_elsa_studio_shows_its_journal_and_a_sync_can_be_started(
    sqlite_database_url: str, tmp_path: Path, page: Page
) -> None:
    simulator = ElsaSimulator(SimulatorConfig(seed=5, definitions=2, instances=8))
    instance_id = next(
        i.id for i in simulator.snapshot().instances.values() if i.sub_status != "Pending"
    )
    events = simulator.instance_journal(instance_id, 0, 1_000)["totalCount"]
    assert isinstance(events, int) and events > 0
    with serve_in_thread(simulator.app) as elsa_url:
        settings = Settings(
            database_url=sqlite_database_url,
            data_dir=tmp_path,
            elsa_url=elsa_url,
            elsa_studio_url="http://studio.example:8080/",
            poll_interval=0.2,
        )
        with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
            deadline = time.monotonic() + 30
            while client.get(f"/api/workflows/instances/{instance_id}").status_code == 404:
                assert time.monotonic() < deadline, "the sync mirrored nothing"
                time.sleep(0.1)
            [source] = client.get("/api/sync/status").json()["sources"]
            assert source["studioUrl"] == "http://studio.example:8080/"
            page.goto(f"{url}/instance?id={instance_id}")
            expect(page.locator("#studio")).to_have_attribute(
                "href", f"http://studio.example:8080/workflows/instances/{instance_id}/view"
            )
            # Its execution journal, read from ELSA when asked.
            page.get_by_role("button", name="Read the journal from ELSA").click()
            expect(page.locator("#journal tbody tr")).to_have_count(events)
            expect(page.locator("#journal-count")).to_have_text(f"{events} of {events} events")
            expect(page.locator("#journal tbody tr").first).to_contain_text("Started")
            # The dashboard offers a sync now (an open server: every scope), after a confirm.
            page.goto(url)
            page.once("dialog", lambda dialog: dialog.accept())
            page.get_by_role("button", name="Sync now").click()
            expect(page.locator("#sync-now-result")).to_have_text("started: elsa")


def test_a_key_that_may_manage_workflows_can_cancel_after_confirming(
    keyed: Keyed, page: Page
) -> None:
    with httpx.Client(
        base_url=keyed.url, headers={"Authorization": f"Bearer {keyed.key}"}, timeout=10
    ) as client:
        _seed(client)
    page.goto(f"{keyed.url}/instance?id=order-4")
    # A key that may only view: no action offered.
    page.fill("#key-input", keyed.view_only)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#state .badge")).to_have_text("Suspended")
    expect(page.locator("#cancel")).to_be_hidden()

    page.get_by_role("button", name="API key").click()
    page.fill("#key-input", keyed.key)
    page.get_by_role("button", name="Save").click()
    cancel = page.get_by_role("button", name="Cancel instance")
    expect(cancel).to_be_visible()
    page.once("dialog", lambda dialog: dialog.dismiss())  # thought better of it
    cancel.click()
    expect(page.locator("#state .badge")).to_have_text("Suspended")
    page.once("dialog", lambda dialog: dialog.accept())
    cancel.click()
    expect(page.locator("#action-result")).to_have_text("Cancelled.")
    expect(page.locator("#state .badge")).to_have_text("Cancelled")
    expect(cancel).to_be_hidden()  # it has ended: nothing left to cancel


def test_trend_charts_show_the_finished_and_faulted_instances_and_follow_new_ones(
    client: httpx.Client, server_url: str, page: Page
) -> None:
    now = int(time.time() * 1000)
    for n, (definition, sub_status) in enumerate(
        [
            ("orders", "Finished"),
            ("orders", "Finished"),
            ("orders", "Faulted"),
            ("refunds", "Faulted"),
        ]
    ):
        body = {
            "id": f"t{n}",
            "definitionId": definition,
            "subStatus": sub_status,
            "createdAt": now - 30 * 60_000,
            "finishedAt": now - 10 * 60_000,
        }
        assert client.post("/api/workflows/instances", json=body).status_code == 201

    page.goto(server_url)
    summary = page.locator("#trends .trend-summary")
    expect(summary).to_have_text("Last day: 4 started · 2 finished · 2 faulted")
    finished = page.locator('#trends [data-series="finished"]')
    expect(finished.locator("b")).to_have_text("2")
    # The bars say which interval they count, and how many.
    expect(finished.locator("rect.finished title")).to_have_count(1)
    expect(finished.locator("rect.finished title")).to_contain_text(": 2 finished")
    page.get_by_role("button", name="Hour").click()
    expect(summary).to_have_text("Last hour: 4 started · 2 finished · 2 faulted")
    expect(page.get_by_role("button", name="Hour")).to_have_attribute("aria-pressed", "true")

    # One more fault shows on the next poll.
    client.put("/api/workflows/instances/t0", json={"subStatus": "Faulted", "finishedAt": now})
    expect(summary).to_have_text("Last hour: 4 started · 2 finished · 3 faulted", timeout=LIVE_MS)

    # A definition's page charts its own instances only.
    page.goto(f"{server_url}/definition?id=refunds")
    expect(page.locator("#trends .trend-summary")).to_have_text(
        "Last day: 1 started · 0 finished · 1 faulted"
    )
