"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tamma_sync.api.deps import StoreDep
from tamma_sync.api.errors import DISK_FULL
from tamma_sync.api.observability import OptionalKey, visible_sources
from tamma_sync.api.schemas import Readiness
from tamma_sync.store import describe_database_error, is_database_unavailable
from tamma_sync.store.migrations import head_revision
from tamma_sync.sync import SyncRunner

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(store: StoreDep, request: Request, key: OptionalKey) -> JSONResponse:
    """Ready to serve: the database answers, its schema is at the newest migration, and it
    has room to write (after a write failed on a full disk, not until one succeeds again).
    `sync` says, per ELSA source the caller may see, whether this replica is the one
    syncing it."""
    expected = head_revision()
    try:
        current = await store.schema_revision()
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        body = Readiness(
            status="unavailable", database="unreachable", error=describe_database_error(exc)
        )
        return JSONResponse(body.to_wire(), status_code=503)
    error = None
    if current != expected:
        error = "database schema is not at the newest migration"
    elif store.disk_full:
        error = DISK_FULL
    sources = await visible_sources(request, key)
    runner: SyncRunner | None = request.app.state.sync_runner
    body = Readiness(
        status="ready" if error is None else "unavailable",
        database="full" if store.disk_full else "ok",
        schema_revision=current,
        expected_schema_revision=expected,
        error=error,
        sync={
            source_id: "leader" if service.leading else "standby"
            for source_id, service in (runner.services.items() if runner else [])
            if sources is None or source_id in sources
        }
        or None,
    )
    return JSONResponse(body.to_wire(), status_code=200 if error is None else 503)
