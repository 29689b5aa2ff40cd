"""`/api/engines/...`: engines register, heartbeat and report events over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from tamma_sync.api.deps import ReportEngines, SettingsDep, StoreDep, ViewDashboard
from tamma_sync.api.errors import ApiError, not_found
from tamma_sync.api.limits import JsonRoute
from tamma_sync.api.schemas import ERROR_RESPONSES, MAX_PAGE, EngineEventList, EventsAdded, Ok
from tamma_sync.fields import EntityId
from tamma_sync.models import Engine, EngineEventWrite, EngineReport
from tamma_sync.settings import DAY_MS

router = APIRouter(
    prefix="/api/engines", tags=["engines"], responses=ERROR_RESPONSES, route_class=JsonRoute
)

MAX_EVENTS_PER_REQUEST = 1_000
MAX_EVENTS_PAGE = 200


@router.put(
    "/{engine_id}",
    response_model_exclude_none=True,
    responses={201: {"model": Engine, "description": "Registered"}},
)
async def report_engine(
    engine_id: EntityId,
    body: EngineReport,
    store: StoreDep,
    tenant: ReportEngines,
    response: Response,
) -> Engine:
    """Register an engine (201) or record its heartbeat (200). Send it at least every
    `heartbeatIntervalSeconds` (default 30): after three missed intervals it is offline.
    Fields not sent keep their value."""
    engine, created = await store.put_engine(tenant, engine_id, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return engine


@router.get("", response_model_exclude_none=True)
async def list_engines(store: StoreDep, tenant: ViewDashboard) -> list[Engine]:
    return await store.list_engines(tenant)


@router.get("/{engine_id}", response_model_exclude_none=True)
async def get_engine(engine_id: str, store: StoreDep, tenant: ViewDashboard) -> Engine:
    engine = await store.get_engine(tenant, engine_id)
    if engine is None:
        raise not_found("Engine")
    return engine


@router.delete("/{engine_id}")
async def delete_engine(engine_id: str, store: StoreDep, tenant: ReportEngines) -> Ok:
    if not await store.delete_engine(tenant, engine_id):
        raise not_found("Engine")
    return Ok()


@router.post("/{engine_id}/events")
async def add_events(
    engine_id: str,
    events: Annotated[list[EngineEventWrite], Body(max_length=MAX_EVENTS_PER_REQUEST)],
    store: StoreDep,
    tenant: ReportEngines,
    settings: SettingsDep,
) -> EventsAdded:
    """Append a batch of events (`[{id?, type, timestamp?, issueNumber?, data}]`). Events
    re-sent with the same id are stored once. Tamma's 18 event types are known; other
    type strings are accepted too."""
    added = await store.add_engine_events(
        tenant,
        engine_id,
        events,
        keep=settings.engine_events_keep,
        max_age_ms=round(settings.engine_events_max_age_days * DAY_MS),
    )
    if added is None:
        raise ApiError(404, "Engine not found; register it first with PUT /api/engines/{id}")
    return EventsAdded(added=added)


@router.get("/{engine_id}/events", response_model_exclude_none=True)
async def list_events(
    engine_id: str,
    store: StoreDep,
    tenant: ViewDashboard,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_EVENTS_PAGE)] = 50,
) -> EngineEventList:
    """An engine's events, newest first."""
    if await store.get_engine(tenant, engine_id) is None:
        raise not_found("Engine")
    events, total = await store.engine_events_page(
        tenant, engine_id, limit=page_size, offset=(page - 1) * page_size
    )
    return EngineEventList(data=events, total=total, page=page, pageSize=page_size)
