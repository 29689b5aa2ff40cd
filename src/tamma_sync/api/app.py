"""The FastAPI application: routers, error handlers, and the resources its lifespan owns."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tamma_sync.api.errors import install_error_handlers
from tamma_sync.api.routes import health, workflows
from tamma_sync.settings import Settings
from tamma_sync.store import Store

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. The database is opened (and migrated) when the app starts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.resolved_database_url
        store = Store.from_url(url)
        try:
            if settings.migrate_on_start:
                await store.migrate()
            log.info("database: %s", make_url(url).render_as_string(hide_password=True))
            app.state.store = store
            yield
        finally:
            await store.close()

    app = FastAPI(
        title="tamma-sync",
        summary="Mirror of ELSA 3 workflows with a Tamma-compatible API",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(workflows.router)
    app.include_router(health.router)
    return app
