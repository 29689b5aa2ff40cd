"""The tamma-sync app served like `tamma-sync serve`, plus what the scale benchmarks need.

`python -m bench._scale_server --port P --database-url URL [--old-routes]`

The app is built and served exactly as `tamma_sync.cli.serve` does it (`create_app(Settings)`
under `tamma_sync.api.server.Server`, one uvicorn process, loopback, default settings from
the environment). `--old-routes` also mounts the original dashboard's counting pattern as
baselines (Tamma contract §3.3): `GET /bench/old/dashboard/workflows` lists the
definitions, then runs one `SELECT count(*) FROM instances WHERE tenant_id = ? AND
definition_id = ? AND deleted_at IS NULL` per definition (a store call, so a connection
checkout, each), and answers with the same models as the new route (counts: the total
only). `GET /bench/old/dashboard/summary` is the new summary with its instance total
counted the same way. Everything else (auth dependency, serialization, middleware) is the
new code, so the only difference measured is the counting.
"""

from __future__ import annotations

import argparse

import sqlalchemy as sa
from fastapi import APIRouter

from tamma_sync.api.app import create_app
from tamma_sync.api.deps import StoreDep, ViewDashboard
from tamma_sync.api.routes.dashboard import RECENT_EVENTS
from tamma_sync.api.schemas import (
    DashboardSummary,
    DefinitionWithCounts,
    EngineHealth,
    InstanceCounts,
    SyncHealth,
)
from tamma_sync.api.server import Server
from tamma_sync.logs import configure_logging
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tamma_sync.store.tables import instances

old_router = APIRouter(prefix="/bench/old", tags=["benchmark baselines"])


async def count_one_definition(store: Store, tenant_id: str, definition_id: str) -> int:
    """One `SELECT count(*) … WHERE definition_id = ?`, as its own store call."""
    async with store.sql_engine.connect() as conn:
        count = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(instances)
                .where(
                    instances.c.tenant_id == tenant_id,
                    instances.c.definition_id == definition_id,
                    instances.c.deleted_at.is_(None),
                )
            )
        ).scalar_one()
    return int(count)


def _total_only(total: int) -> InstanceCounts:
    return InstanceCounts(total=total, by_status={}, by_sub_status={})


@old_router.get("/dashboard/workflows", response_model_exclude_none=True)
async def old_workflows(store: StoreDep, tenant: ViewDashboard) -> list[DefinitionWithCounts]:
    """The original `/api/dashboard/workflows`: N+1 queries."""
    found = []
    for definition in await store.list_definitions(tenant):
        count = await count_one_definition(store, tenant, definition.id)
        found.append(
            DefinitionWithCounts(
                **definition.model_dump(), instance_count=count, counts=_total_only(count)
            )
        )
    return found


@old_router.get("/dashboard/summary", response_model_exclude_none=True)
async def old_summary(store: StoreDep, tenant: ViewDashboard) -> DashboardSummary:
    """The new summary, its instance total counted one definition at a time."""
    engines = await store.list_engines(tenant)
    recent, _ = await store.engine_events_page(tenant, None, limit=RECENT_EVENTS)
    definitions = await store.list_definitions(tenant)
    total = 0
    for definition in definitions:
        total += await count_one_definition(store, tenant, definition.id)
    online = sum(engine.online for engine in engines)
    return DashboardSummary(
        engine_count=len(engines),
        workflow_definitions=len(definitions),
        recent_events=recent,
        instances=_total_only(total),
        engines=EngineHealth(online=online, offline=len(engines) - online),
        sync=[SyncHealth.of(state) for state in await store.source_states(tenant)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--old-routes", action="store_true")
    args = parser.parse_args()
    settings = Settings(database_url=args.database_url)
    configure_logging(settings.log_format)
    app = create_app(settings, host="127.0.0.1")
    if args.old_routes:
        app.include_router(old_router)
    server = Server(
        app, host="127.0.0.1", port=args.port, own_logging=settings.log_format == "json"
    )
    server.run()


if __name__ == "__main__":
    main()
