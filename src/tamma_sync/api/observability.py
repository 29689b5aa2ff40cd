"""`GET /metrics`, and the gauges read from the running app.

`/metrics` and `/readyz` answer probes and scrapers, which call without a key; what they
say of an ELSA source (its id, its figures) belongs to the source's tenant, so it is told
only to those `visible_sources` lets see it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST

from tamma_sync.api.auth import Authenticator, bearer
from tamma_sync.api.errors import ApiError
from tamma_sync.feed import ChangeFeed, PostgresBroker
from tamma_sync.metrics import SOURCE, Metrics
from tamma_sync.models import Scope as KeyScope
from tamma_sync.settings import Settings
from tamma_sync.store import Store, is_database_unavailable
from tamma_sync.sync import SyncRunner

router = APIRouter(tags=["health"])

#: An API key, if the caller sent one: it is not required.
OptionalKey = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}
)
async def metrics(request: Request, key: OptionalKey) -> Response:
    """Prometheus metrics: requests, sync cycles, SSE subscribers, broker lag, database pool.
    A source's series only for callers that may see it (see `visible_sources`)."""
    app_metrics: Metrics = request.app.state.metrics
    exposition = app_metrics.exposition(await visible_sources(request, key))
    return Response(exposition, media_type=CONTENT_TYPE_LATEST)


async def visible_sources(
    request: Request, key: HTTPAuthorizationCredentials | None
) -> frozenset[str] | None:
    """The sources this caller may see named (None: all). All on a server without API keys,
    or where `public_source_detail` allows it; else those of the key's tenant, for a key
    with dashboard:view (as `/api/sync/status`); none for other callers. No key, or one not
    valid, is not refused: a probe must not fail for it."""
    settings: Settings = request.app.state.settings
    if settings.public_source_detail:
        return None
    authenticator: Authenticator = request.app.state.authenticator
    try:
        principal = await authenticator.principal(key.credentials if key else None)
    except Exception as exc:
        if isinstance(exc, ApiError) or is_database_unavailable(exc):
            return frozenset()
        raise
    if principal.key_id is None:  # no API keys: nothing here is any tenant's to hide
        return None
    runner: SyncRunner | None = request.app.state.sync_runner
    if runner is None or KeyScope.DASHBOARD_VIEW not in principal.scopes:
        return frozenset()
    return frozenset(runner.sources_of(principal.tenant_id))


def watch_state(metrics: Metrics, store: Store, feed: ChangeFeed, runner: SyncRunner) -> None:
    """Gauges of what the app is doing right now, read at each scrape."""
    pool = store.sql_engine.sync_engine.pool
    metrics.state.add(
        (
            "tamma_sync_sse_subscribers",
            "Open SSE streams in this process.",
            [],
            lambda: [([], float(feed.subscriber_count))],
        )
    )
    metrics.state.add(
        (
            "tamma_sync_feed_lag_changes",
            "Changes committed but not yet handed to this process's subscribers.",
            [],
            lambda: [([], float(feed.lag))],
        )
    )
    metrics.state.add(
        (
            "tamma_sync_db_pool_connections",
            "Database connections of this process, by state.",
            ["state"],
            lambda: [
                (["checked_out"], float(getattr(pool, "checkedout", lambda: 0)())),
                (["idle"], float(getattr(pool, "checkedin", lambda: 0)())),
            ],
        )
    )
    metrics.state.add(
        (
            "tamma_sync_sync_leader",
            "1 where this process is the one syncing the source.",
            [SOURCE],
            lambda: [([sid], float(s.leading)) for sid, s in runner.services.items()],
        )
    )
    if isinstance(feed.broker, PostgresBroker):
        broker = feed.broker
        metrics.state.add(
            (
                "tamma_sync_broker_connected",
                "1 while the PostgreSQL LISTEN connection is up.",
                [],
                lambda: [([], float(broker.connected))],
            )
        )
