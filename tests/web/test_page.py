"""The dashboard page over real HTTP: server-rendered data, empty states, escaping, assets."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser

import httpx

from tamma_sync.api.routes.web import STATIC_DIR, render_page
from tests.web.conftest import SYNC_ERROR, Keyed, Seeded, seed

VOID_TAGS = frozenset({"meta", "link", "input", "br", "img", "hr"})
EMPTY_HINTS = ["instances", "workflows", "sources", "engines", "events"]


@dataclass
class Element:
    attrs: dict[str, str | None]
    text: str = ""
    children: list[dict[str, str | None]] = field(default_factory=list)
    """The attributes of every element inside it."""

    @property
    def hidden(self) -> bool:
        return "hidden" in self.attrs


class _Finder(HTMLParser):
    """Collects each element that has an id: its attributes, text and descendants."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, Element] = {}
        self._open: list[tuple[str, Element | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for _, element in self._open:
            if element is not None:
                element.children.append(attributes)
        element = Element(attributes) if attributes.get("id") else None
        if element is not None:
            self.found[str(attributes["id"])] = element
        if tag not in VOID_TAGS:
            self._open.append((tag, element))

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for _, element in self._open:
            if element is not None:
                element.text += f" {data}"


def elements(html: str) -> dict[str, Element]:
    finder = _Finder()
    finder.feed(html)
    return finder.found


def text(element: Element) -> str:
    return " ".join(element.text.split())


def get_page(client: httpx.Client) -> str:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src" not in response.headers["content-security-policy"], "'self' only"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    return response.text


def test_an_empty_database_says_what_to_do_next(client: httpx.Client, server_url: str) -> None:
    page = elements(get_page(client))
    for hint in EMPTY_HINTS:
        assert not page[f"{hint}-empty"].hidden, f"the {hint} panel explains its emptiness"
        assert page[hint].children == [], f"no {hint} and no loading placeholder"
    sources = text(page["sources-empty"])
    assert "TAMMA_SYNC_ELSA_URL" in sources
    assert "tamma-sync demo" in sources
    engines = text(page["engines-empty"])
    assert "PUT /api/engines/{id}" in engines
    assert f"curl -X PUT {server_url}/api/engines/my-engine" in engines
    assert text(page["tiles"]).startswith("Definitions 0 Instances 0 Running 0 Finished 0")
    assert text(page["sync-banners"]) == ""


def test_the_page_shows_what_the_api_holds(seeded: Seeded) -> None:
    page = elements(get_page(seeded.client))
    for hint in EMPTY_HINTS:
        assert page[f"{hint}-empty"].hidden

    banner = text(page["sync-banners"])
    assert "Sync of elsa-prod is failing" in banner
    assert SYNC_ERROR in banner
    error_at = datetime.fromtimestamp(seeded.error_at / 1000, UTC).isoformat(timespec="seconds")
    assert any(child.get("datetime") == error_at for child in page["sync-banners"].children), (
        "the banner says when the error happened"
    )
    assert SYNC_ERROR in text(page["sources"])

    engines = text(page["engines"])
    assert "Tamma engine AWAITING_APPROVAL online" in engines
    assert "issuesProcessed 3" in engines
    assert "elsa.example.com error" in engines, "the ELSA source is an engine too"

    workflows = text(page["workflows"])
    assert "Tamma Autonomous Mentorship v3 4 instances" in workflows
    assert "Pending 1 Suspended 3" in workflows, "counts by sub-status"

    instances = [c["data-id"] for c in page["instances"].children if "data-id" in c]
    assert instances == ["legacy-1", "elsa-2", "elsa-1", "elsa-0"], "newest change first"
    assert "await-review" in text(page["instances"])
    assert "PR_CREATED seed-engine #42" in text(page["events"])
    assert text(page["tiles"]).startswith("Definitions 1 Instances 4 Pending 1 Suspended 3")


def test_everything_is_escaped(client: httpx.Client) -> None:
    script = "<script>alert(1)</script>"
    client.post("/api/workflows/definitions", json={"id": "x", "name": script})
    client.post(
        "/api/workflows/instances",
        json={"id": "i", "definitionId": "x", "currentActivity": '"><img src=x onerror=alert(2)>'},
    )
    html = get_page(client)
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html


def test_assets_are_served_with_their_types_and_versioned_urls(client: httpx.Client) -> None:
    html = get_page(client)
    for name, content_type in [
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
    ]:
        digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
        url = f"web/{name}?v={digest}"
        assert f'"{url}"' in html, "a relative URL that changes with the content"
        response = client.get(f"/{url}")
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == content_type
        assert response.content == (STATIC_DIR / name).read_bytes()
        assert response.headers["cache-control"] == "no-cache"
    # The scripts import it by its plain name: a browser must ask whether it changed.
    shared = client.get("/web/common.js")
    assert shared.status_code == 200 and shared.headers["cache-control"] == "no-cache"
    revalidated = client.get("/web/common.js", headers={"If-None-Match": shared.headers["etag"]})
    assert revalidated.status_code == 304
    assert client.get("/web/dashboard.html").status_code == 404, "the template is not an asset"


def test_with_api_keys_the_page_is_a_shell_without_data(keyed: Keyed) -> None:
    """A browser sends no key when it loads a page: the script loads the data, with one."""
    headers = {"Authorization": f"Bearer {keyed.key}"}
    with httpx.Client(base_url=keyed.url, headers=headers, timeout=10) as client:
        seed(client)
    with httpx.Client(base_url=keyed.url, timeout=10) as anonymous:
        assert anonymous.get("/api/dashboard/summary").status_code == 401
        html = get_page(anonymous)
    assert html == render_page(f"{keyed.url}/", None)
    assert "Tamma engine" not in html
    assert SYNC_ERROR not in html


def test_the_shell_renders_without_data() -> None:
    html = render_page("http://tamma.example/", None)
    page = elements(html)
    assert "data-seq" not in html
    for hint in EMPTY_HINTS:
        assert page[f"{hint}-empty"].hidden, "not known to be empty yet"
        assert text(page[hint]) == "Loading…"
    assert text(page["tiles"]) == "Loading…"
    assert 'src="web/dashboard.js?v=' in html
