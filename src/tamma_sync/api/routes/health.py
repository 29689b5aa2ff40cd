"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tamma_sync.api.deps import StoreDep
from tamma_sync.api.schemas import Readiness
from tamma_sync.store import is_database_unavailable
from tamma_sync.store.migrations import head_revision
from tamma_sync.sync import SyncRunner

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(store: StoreDep, request: Request) -> JSONResponse:
    """Ready to serve: the database answers and its schema is at the newest migration.
    `sync` says, per ELSA source, whether this replica is the one syncing it."""
    expected = head_revision()
    try:
        current = await store.schema_revision()
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        body = Readiness(status="unavailable", database="unreachable", error=str(exc)[:200])
        return JSONResponse(body.to_wire(), status_code=503)
    ready = current == expected
    runner: SyncRunner | None = request.app.state.sync_runner
    body = Readiness(
        status="ready" if ready else "unavailable",
        database="ok",
        schema_revision=current,
        expected_schema_revision=expected,
        error=None if ready else "database schema is not at the newest migration",
        sync={
            source_id: "leader" if service.leading else "standby"
            for source_id, service in (runner.services.items() if runner else [])
        }
        or None,
    )
    return JSONResponse(body.to_wire(), status_code=200 if ready else 503)
