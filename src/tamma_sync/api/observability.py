"""Request metrics, `GET /metrics`, and the gauges read from the running app."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tamma_sync.feed import ChangeFeed, PostgresBroker
from tamma_sync.metrics import Metrics
from tamma_sync.store import Store
from tamma_sync.sync import SyncRunner

router = APIRouter(tags=["health"])


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, sync cycles, SSE subscribers, broker lag, database pool."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI middleware: count and time every request by its route template (never the raw
    path: ids would explode the label set)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self._metrics.http_requests.labels(template, method, str(status)).inc()
            self._metrics.http_latency.labels(template, method).observe(
                time.perf_counter() - started
            )


def watch_state(metrics: Metrics, store: Store, feed: ChangeFeed, runner: SyncRunner) -> None:
    """Gauges of what the app is doing right now, read at each scrape."""
    pool = store.engine.sync_engine.pool
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
            ["source"],
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
