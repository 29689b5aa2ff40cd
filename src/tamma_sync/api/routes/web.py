"""The web pages: the dashboard at `/`, the instances explorer at `/instances`, one instance
at `/instance?id=…` and one definition at `/definition?id=…`; one stylesheet, and a script
per page beside the one they share (common.js). Every page lives at the app's root, so
that its relative URLs (`api/…`, `web/…`) hold under any path prefix.

The dashboard is rendered from the very JSON the API returns (the route handlers are called
in-process), and the script re-renders the same shapes from the API, so the first paint
and every live update agree. A browser sends no API key when it loads a page, so once keys
are enforced the page is a shell without data (`data=None`), which the script fills by
calling the API with the key the user gave it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import quote

import jinja2
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from tamma_sync.api.auth import Authenticator
from tamma_sync.api.body_cache import BodyCache
from tamma_sync.api.deps import BodyCacheDep, StoreDep
from tamma_sync.api.errors import ApiError
from tamma_sync.api.routes import dashboard, engines, sync, workflows
from tamma_sync.api.schemas import InstanceListQuery
from tamma_sync.models import Scope, SubStatus, now_ms
from tamma_sync.store import Store

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
STATIC_DIR = WEB_DIR / "static"
#: Where `assets` is mounted (app.py).
STATIC_PATH = "/web"
#: How many recently changed instances the page starts with (the live list keeps 50).
RECENT_INSTANCES = 20
#: The page runs only its own script and styles, talks only to this server, and cannot be
#: framed: an injected string can do nothing, and the API-key field cannot be clickjacked.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


class Assets(StaticFiles):
    """The pages' files, revalidated on every use (a 304 while unchanged): the scripts
    import common.js by its plain name, which must never be older than they are."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


assets = Assets(directory=STATIC_DIR)


class PageData(TypedDict):
    """What the page shows, each part exactly as its API endpoint returns it."""

    seq: int
    """The change log's head before anything was read: the live feed resumes from it."""
    now: int
    summary: dict[str, Any]
    engines: list[dict[str, Any]]
    workflows: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    instances: list[dict[str, Any]]


@router.get("/", response_class=HTMLResponse)
async def page(request: Request, store: StoreDep, cache: BodyCacheDep) -> HTMLResponse:
    """The dashboard: with its data while the server is open, else the shell."""
    tenant = await _open_tenant(request)
    data = await page_data(store, cache, tenant) if tenant is not None else None
    return HTMLResponse(render_page(str(request.base_url), data), headers=PAGE_HEADERS)


@router.get("/instances", response_class=HTMLResponse)
async def explorer_page() -> HTMLResponse:
    """The instances explorer: filters (in the URL), pages, live rows; filled by its script."""
    html = _templates.get_template("instances.html").render(sub_statuses=list(SubStatus))
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get("/instance", response_class=HTMLResponse)
async def instance_page() -> HTMLResponse:
    """One instance (`?id=`): fields, variables, timeline; filled by its script."""
    return HTMLResponse(_templates.get_template("instance.html").render(), headers=PAGE_HEADERS)


@router.get("/definition", response_class=HTMLResponse)
async def definition_page() -> HTMLResponse:
    """One definition (`?id=`): counts, and where its running instances are; by its script."""
    html = _templates.get_template("definition.html").render()
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get("/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> HTMLResponse:
    """Swagger UI from this package's own copy (static/swagger-ui/README.md): FastAPI's
    loads it from a CDN, so /docs was blank offline. Nothing is asked of another server:
    no favicon, no online validator."""
    root_path = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root_path + request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_SWAGGER_JS_URL,
        swagger_css_url=_SWAGGER_CSS_URL,
        swagger_favicon_url="data:,",
        swagger_ui_parameters={"validatorUrl": None},
    )


async def _open_tenant(request: Request) -> str | None:
    """The tenant whose dashboard anyone may see without a key: the open server's (no API
    keys exist), or None once keys are enforced."""
    authenticator: Authenticator = request.app.state.authenticator
    try:
        principal = await authenticator.principal(None)
    except ApiError:
        return None
    return principal.tenant_id if Scope.DASHBOARD_VIEW in principal.scopes else None


async def page_data(store: Store, cache: BodyCache, tenant: str) -> PageData:
    """Read by the API's own handlers, so that the page and the API cannot disagree."""
    seq = await store.last_seq()
    newest = {"pageSize": RECENT_INSTANCES, "orderBy": "updatedAt", "includeTotal": False}
    recent = await workflows.list_instances(store, tenant, InstanceListQuery.model_validate(newest))
    return PageData(
        seq=seq,
        now=now_ms(),
        summary=_wire(await dashboard.summary(store, tenant)),
        engines=[_wire(engine) for engine in await engines.list_engines(store, tenant)],
        workflows=orjson.loads(
            (await dashboard.workflows_body(store, cache, tenant, compact=True)).body
        ),
        sources=[_wire(status) for status in await sync.source_statuses(store, tenant)],
        instances=_decode(recent)["data"],
    )


def render_page(base_url: str, data: PageData | None) -> str:
    """The page; `base_url` (ending in "/") goes into the copy-paste hints."""
    return _templates.get_template("dashboard.html").render(base_url=base_url, data=data)


def _wire(model: BaseModel) -> dict[str, Any]:
    """The JSON the API sends for `model` (camelCase, null fields omitted)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _decode(response: Response) -> Any:
    """The JSON body of a response a handler wrote itself."""
    return orjson.loads(response.body)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _ago(ms: int, now: int) -> str:
    """Relative time, worded as the script words it (dashboard.js `ago`)."""
    seconds = max(0, (now - ms) // 1000)
    if seconds < 5:
        return "just now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _show(value: Any) -> str:
    """A JSON value as short text, as the script shows it (dashboard.js `show`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _uri_component(text: str) -> str:
    """`text` escaped as JavaScript's encodeURIComponent escapes it (dashboard.js builds the
    same links)."""
    return quote(text, safe="!'()*")


def _asset_url(name: str) -> str:
    """The asset's URL (relative, so the app may sit under a path prefix) with a content
    hash, so that a new version is never served from a cache."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"{STATIC_PATH.lstrip('/')}/{name}?v={digest}"


_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(WEB_DIR),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals.update(
    iso=_iso,
    ago=_ago,
    show=_show,
    uri_component=_uri_component,
    css_url=_asset_url("dashboard.css"),
    js_url=_asset_url("dashboard.js"),
    explorer_js_url=_asset_url("explorer.js"),
    instance_js_url=_asset_url("instance.js"),
    definition_js_url=_asset_url("definition.js"),
)
_SWAGGER_JS_URL = _asset_url("swagger-ui/swagger-ui-bundle.js")
_SWAGGER_CSS_URL = _asset_url("swagger-ui/swagger-ui.css")
