"""`/api/dashboard/...`: the compatible dashboard endpoints, with what a dashboard needs.

The original `/workflows` counted instances with one query per definition; here every
count comes from one GROUP BY over (definition, subStatus).
"""

from __future__ import annotations

from fastapi import APIRouter

from tamma_sync.api.deps import StoreDep, ViewDashboard
from tamma_sync.api.schemas import (
    ERROR_RESPONSES,
    DashboardSummary,
    DefinitionWithCounts,
    EngineHealth,
    InstanceCounts,
    SyncHealth,
)
from tamma_sync.models import Engine

router = APIRouter(prefix="/api/dashboard", tags=["dashboard"], responses=ERROR_RESPONSES)

RECENT_EVENTS = 20


@router.get("/summary", response_model_exclude_none=True)
async def summary(store: StoreDep, tenant: ViewDashboard) -> DashboardSummary:
    """`{engineCount, workflowDefinitions, recentEvents}` as the original, plus instance
    counts by status, engines online/offline and sync health per source."""
    engines = await store.list_engines(tenant)
    recent, _ = await store.engine_events_page(tenant, None, limit=RECENT_EVENTS)
    counts = await store.instance_counts(tenant)
    online = sum(engine.online for engine in engines)
    return DashboardSummary(
        engine_count=len(engines),
        workflow_definitions=await store.count_definitions(tenant),
        recent_events=recent,
        instances=InstanceCounts.total_of(counts.values()),
        engines=EngineHealth(online=online, offline=len(engines) - online),
        sync=[SyncHealth.of(state) for state in await store.source_states(tenant)],
    )


@router.get("/engines", response_model_exclude_none=True)
async def engines(store: StoreDep, tenant: ViewDashboard) -> list[Engine]:
    """Every engine: `{id, state, stats}` as the original, plus liveness and details."""
    return await store.list_engines(tenant)


@router.get("/workflows", response_model_exclude_none=True)
async def workflows(store: StoreDep, tenant: ViewDashboard) -> list[DefinitionWithCounts]:
    """Every definition with its `instanceCount`, and counts by status and subStatus."""
    counts = await store.instance_counts(tenant)
    return [
        DefinitionWithCounts.of(
            definition, InstanceCounts.total_of([counts.get(definition.id, {})])
        )
        for definition in await store.list_definitions(tenant)
    ]
