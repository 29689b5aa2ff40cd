"""`/api/dashboard/...`: the compatible dashboard endpoints, with what a dashboard needs.

The original `/workflows` counted instances with one query per definition; here every
count comes from one GROUP BY over (definition, subStatus).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from tamma_sync.api.body_cache import BodyCache, CachedBody
from tamma_sync.api.deps import BodyCacheDep, StoreDep, ViewDashboard
from tamma_sync.api.responses import json_array, with_fields
from tamma_sync.api.schemas import (
    ERROR_RESPONSES,
    DashboardSummary,
    DefinitionWithCounts,
    EngineHealth,
    InstanceCounts,
    SyncHealth,
    count_breakdown,
)
from tamma_sync.models import Engine
from tamma_sync.store import Store

router = APIRouter(prefix="/api/dashboard", tags=["dashboard"], responses=ERROR_RESPONSES)

RECENT_EVENTS = 20


@router.get("/summary", response_model_exclude_none=True)
async def summary(store: StoreDep, tenant: ViewDashboard) -> DashboardSummary:
    """`{engineCount, workflowDefinitions, recentEvents}` as the original, plus instance
    counts by status, engines online/offline and sync health per source."""
    overview = await store.overview(tenant, recent_events=RECENT_EVENTS)
    engines = EngineHealth(online=overview.engines_online, offline=overview.engines_offline)
    return DashboardSummary(
        engine_count=engines.online + engines.offline,
        workflow_definitions=overview.totals.definitions,
        recent_events=overview.recent_events,
        instances=InstanceCounts.total_of([overview.totals.instances]),
        engines=engines,
        sync=[SyncHealth.of(state) for state in overview.sources],
    )


@router.get("/engines", response_model_exclude_none=True)
async def engines(store: StoreDep, tenant: ViewDashboard) -> list[Engine]:
    """Every engine: `{id, state, stats}` as the original, plus liveness and details."""
    return await store.list_engines(tenant)


@router.get(
    "/workflows",
    response_model=list[DefinitionWithCounts],
    responses={HTTPStatus.NOT_MODIFIED: {"description": "`If-None-Match` names this list."}},
)
async def workflows(
    request: Request,
    store: StoreDep,
    cache: BodyCacheDep,
    tenant: ViewDashboard,
    compact: Annotated[
        bool, Query(description="Leave out each definition's activities and variables.")
    ] = False,
) -> Response:
    """Every definition with its `instanceCount`, and counts by status and subStatus.
    Sent with an `ETag` (`If-None-Match` gets `304`), gzipped for callers that accept it."""
    body = await workflows_body(store, cache, tenant, compact)
    return await body.response(request)


async def workflows_body(store: Store, cache: BodyCache, tenant: str, compact: bool) -> CachedBody:
    """The list as cached at the current catalog revision, built if it is not."""
    revision = await store.catalog_revision()
    return await cache.get(
        ("workflows", tenant, compact), revision, lambda: _workflows(store, tenant, compact)
    )


async def _workflows(store: Store, tenant: str, compact: bool) -> bytes:
    async with store.reading_together():
        counts = await store.instance_counts(tenant)
        definitions = await store.list_definition_json(tenant, compact=compact)
    return json_array(
        with_fields(json, _count_fields(count_breakdown([counts.get(definition_id, {})])))
        for definition_id, json in definitions
    )


def _count_fields(breakdown: dict[str, Any]) -> dict[str, Any]:
    return {"instanceCount": breakdown["total"], "counts": breakdown}
