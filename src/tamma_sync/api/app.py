"""The FastAPI application: routers, error handlers, and the resources its lifespan owns."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tamma_sync.api.errors import install_error_handlers
from tamma_sync.api.routes import dashboard, engines, events, health, sync, workflows
from tamma_sync.feed import ChangeFeed, broker_for
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tamma_sync.sync import SyncRunner

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. The database is opened (and migrated) when the app starts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.resolved_database_url
        store = Store.from_url(url)
        runner: SyncRunner | None = None
        feed: ChangeFeed | None = None
        try:
            if settings.migrate_on_start:
                await store.migrate()
            log.info("database: %s", make_url(url).render_as_string(hide_password=True))
            app.state.store = store
            feed = ChangeFeed(
                store,
                broker_for(store, url),
                capacity=settings.sse_queue_size,
                poll_interval=settings.feed_poll_interval,
            )
            await feed.start()
            app.state.feed = feed
            runner = SyncRunner.into_store(settings, store)
            app.state.sync_runner = runner
            runner.start()
            yield
        finally:
            if runner is not None:
                await runner.stop()
            if feed is not None:
                await feed.stop()
            await store.close()

    app = FastAPI(
        title="tamma-sync",
        summary="Mirror of ELSA 3 workflows with a Tamma-compatible API",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sync_runner = None
    install_error_handlers(app)
    app.include_router(workflows.router)
    app.include_router(events.router)
    app.include_router(engines.router)
    app.include_router(dashboard.router)
    app.include_router(sync.router)
    app.include_router(health.router)
    return app
