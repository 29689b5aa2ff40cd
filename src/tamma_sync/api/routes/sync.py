"""`/api/sync/...`: batch ingest for push mode, sync status, and "sync now"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from tamma_sync.api.deps import SettingsDep, StoreDep, ViewDashboard, WriteSync
from tamma_sync.api.errors import ApiError
from tamma_sync.api.limits import JsonRoute
from tamma_sync.api.schemas import (
    ERROR_RESPONSES,
    BatchResult,
    InstancePositions,
    SourceStatus,
    SyncStatus,
    Triggered,
)
from tamma_sync.models import MAX_EPOCH_MS, SyncBatch
from tamma_sync.store import Store
from tamma_sync.sync import SyncRunner

router = APIRouter(
    prefix="/api/sync", tags=["sync"], responses=ERROR_RESPONSES, route_class=JsonRoute
)

MAX_POSITIONS = 10_000


@router.post("/batch")
async def apply_batch(batch: SyncBatch, store: StoreDep, tenant: WriteSync) -> BatchResult:
    """Apply one sync batch atomically: definitions, instances, deletions and the source's
    state. Idempotent: a batch sent twice changes nothing the second time."""
    result = await store.apply_sync_batch(tenant, batch)
    return BatchResult(
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
        deleted=result.deleted,
    )


@router.get("/status", response_model_exclude_none=True)
async def sync_status(store: StoreDep, tenant: ViewDashboard, settings: SettingsDep) -> SyncStatus:
    """Per ELSA source: tenant, phase, cursor, last success, last error, counts, cycle
    duration; and how long this server keeps ended instances."""
    return SyncStatus(
        sources=await source_statuses(store, tenant),
        keep_ended_instances_ms=settings.keep_ended_instances_ms,
    )


async def source_statuses(store: Store, tenant: str) -> list[SourceStatus]:
    """Each ELSA source's state, with its tenant and its live counts."""
    counts = await store.source_counts(tenant)
    return [
        SourceStatus(
            **state.model_dump(),
            tenant_id=tenant,
            counts=counts.get(state.source_id, {"definitions": 0, "instances": 0}),
        )
        for state in await store.source_states(tenant)
    ]


@router.post("/trigger", status_code=status.HTTP_202_ACCEPTED)
async def trigger_sync(
    request: Request,
    tenant: WriteSync,
    source: Annotated[str | None, Query(description="One source id; all when omitted.")] = None,
) -> Triggered:
    """Start a sync cycle now for the caller's sources (also usable as the target of ELSA's
    RunTask webhook: the body is ignored)."""
    runner: SyncRunner | None = request.app.state.sync_runner
    mine = runner.sources_of(tenant) if runner is not None else []
    if not mine:
        raise ApiError(409, "This server syncs no ELSA source (set TAMMA_SYNC_ELSA_URL)")
    if source is not None and source not in mine:
        raise ApiError(404, f"Unknown source {source!r}")
    assert runner is not None
    return Triggered(triggered=runner.trigger([source] if source is not None else mine))


@router.get("/sources/{source_id}/instances", response_model_exclude_none=True)
async def source_instances(
    source_id: str,
    store: StoreDep,
    tenant: WriteSync,
    after: Annotated[str | None, Query(description="The last id of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POSITIONS)] = 1000,
    created_from: Annotated[
        int | None,
        Query(alias="createdFrom", ge=0, le=MAX_EPOCH_MS, description="Epoch ms, inclusive."),
    ] = None,
    created_before: Annotated[
        int | None,
        Query(alias="createdBefore", ge=0, le=MAX_EPOCH_MS, description="Epoch ms, exclusive."),
    ] = None,
    active: Annotated[bool, Query(description="Only instances that have not ended.")] = False,
) -> InstancePositions:
    """Ids, `createdAt`, `updatedAt` and `subStatus` of a source's live instances, in id
    order: what a pushing sync worker compares with ELSA's listing."""
    positions = await store.source_instance_positions(
        tenant,
        source_id,
        created_from=created_from,
        created_before=created_before,
        active=active,
        after_id=after,
        limit=limit,
    )
    return InstancePositions(items=positions)
