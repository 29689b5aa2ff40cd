"""The FastAPI application: routers, error handlers, and the resources its lifespan owns."""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from tamma_sync.api import fast_routes, observability
from tamma_sync.api.auth import Authenticator, is_loopback
from tamma_sync.api.body_cache import BodyCache
from tamma_sync.api.errors import install_error_handlers
from tamma_sync.api.front_door import FrontDoor
from tamma_sync.api.observability import watch_state
from tamma_sync.api.routes import (
    access,
    activities,
    dashboard,
    engines,
    events,
    health,
    history,
    sync,
    trends,
    web,
    workflows,
)
from tamma_sync.feed import ChangeFeed, broker_for
from tamma_sync.metrics import Metrics
from tamma_sync.models import now_ms
from tamma_sync.retention import RetentionService
from tamma_sync.settings import Settings
from tamma_sync.store import MigrationRefused, Store, describe_unreachable_database
from tamma_sync.sync import SyncRunner

log = logging.getLogger(__name__)


class Api(FastAPI):
    """The FastAPI app, with `FrontDoor` in front of its middleware stack (and CORS, if
    configured, in front of that). `fast_routes`: what the front door answers itself."""

    fast_routes: list[fast_routes.FastRoute]

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        stack: ASGIApp = FrontDoor(
            super().build_middleware_stack(),
            routes=self.fast_routes,
            handlers=self.exception_handlers,
            metrics=self.state.metrics,
            max_body_bytes=settings.max_body_bytes,
        )
        if settings.cors_origins:
            stack = CORSMiddleware(
                stack,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            )
        return stack


def create_app(
    settings: Settings | None = None,
    *,
    host: str = "127.0.0.1",
    insecure: bool = False,
    clock: Callable[[], int] = now_ms,
) -> Api:
    """Build the app to serve on `host`. The database is opened (and migrated) when the app
    starts; then, on any interface but loopback, it refuses to start without an API key
    unless `insecure`. `clock`: the store's now (tests move it, see `Store`)."""
    settings = settings or Settings()
    keys_required = not is_loopback(host) and not insecure

    @asynccontextmanager
    async def lifespan(app: Api) -> AsyncIterator[None]:
        url = settings.resolved_database_url
        store = Store.from_url(url, pool_size=settings.database_pool_size, clock=clock)
        runner: SyncRunner | None = None
        feed: ChangeFeed | None = None
        retention: asyncio.Task[None] | None = None
        try:
            await _open(store, settings, host, keys_required)
            app.state.store = store
            app.state.body_cache = BodyCache()
            app.state.authenticator = Authenticator(
                store, keys_required=keys_required, cache_seconds=settings.auth_cache_seconds
            )
            feed = ChangeFeed(
                store,
                broker_for(store, url),
                capacity=settings.sse_queue_size,
                poll_interval=settings.feed_poll_interval,
            )
            await feed.start()
            app.state.feed = feed
            runner = SyncRunner.into_store(settings, store, metrics)
            app.state.sync_runner = runner
            watch_state(metrics, store, feed, runner)
            runner.start()
            retention = asyncio.create_task(RetentionService(store, settings).run())
            yield
        finally:
            if retention is not None:
                retention.cancel()
                # Ended before the store closes: a purge must not run on a closed store.
                with suppress(asyncio.CancelledError):
                    await retention
            if runner is not None:
                await runner.stop()
            if feed is not None:
                await feed.stop()
            await store.close()

    app = Api(
        title="tamma-sync",
        summary="Mirror of ELSA 3 workflows with a Tamma-compatible API",
        version=importlib.metadata.version("tamma-sync"),  # pyproject.toml's
        lifespan=lifespan,
        # FastAPI's own pages load from a CDN: web.py serves /docs from the package instead,
        # and there is no ReDoc.
        docs_url=None,
        redoc_url=None,
        # FastAPI's OpenTelemetry hooks look for configured providers on every request (4 %
        # of a small request's CPU); metrics are Prometheus's (`observability`).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    metrics = Metrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.sync_runner = None
    install_error_handlers(app)
    app.fast_routes = fast_routes.routes()
    app.include_router(workflows.router)
    app.include_router(history.router)
    app.include_router(access.router)
    app.include_router(activities.router)
    app.include_router(trends.router)
    app.include_router(events.router)
    app.include_router(engines.router)
    app.include_router(dashboard.router)
    app.include_router(sync.router)
    app.include_router(health.router)
    app.include_router(observability.router)
    app.include_router(web.router)
    app.mount(web.STATIC_PATH, web.assets, name="web")
    app.openapi = functools.partial(_openapi_without_422, app)  # type: ignore[method-assign]
    return app


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents a 422 for validation errors; tamma-sync answers 400 (the Tamma
    contract), which every router documents, so the 422 entries are removed."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


class StartupRefused(Exception):
    """A reason not to start that says all there is to say: logged as its one line, without
    a traceback (api/server.py)."""


async def _open(store: Store, settings: Settings, host: str, keys_required: bool) -> None:
    """Migrate if asked and check the exposure; a database that cannot be reached is
    refused in one line."""
    url = settings.resolved_database_url
    try:
        if settings.migrate_on_start:
            await store.migrate()
        log.info("database: %s", make_url(url).render_as_string(hide_password=True))
        await _check_exposure(store, host, keys_required)
    except MigrationRefused as exc:
        raise StartupRefused(str(exc)) from exc
    except Exception as exc:
        reason = describe_unreachable_database(exc, url)
        if reason is None:
            raise
        raise StartupRefused(reason) from exc


async def _check_exposure(store: Store, host: str, keys_required: bool) -> None:
    """Say plainly who can reach this server; refuse an open server on a network interface."""
    if await store.has_active_api_keys():
        log.info("API keys are required (Authorization: Bearer <key>)")
    elif keys_required:
        raise StartupRefused(refusal(host))
    elif is_loopback(host):
        log.warning("no API keys: the API is open to anyone on this machine (loopback only)")
    else:
        log.warning("no API keys and --insecure: the API is open to anyone who can reach %s", host)


def refusal(host: str) -> str:
    return (
        f"refusing to serve on {host} without API keys: anyone on the network could read and "
        "change the mirror. Create one with `tamma-sync keys create --tenant <id> --scopes "
        "...`, or pass --insecure to serve without authentication."
    )
