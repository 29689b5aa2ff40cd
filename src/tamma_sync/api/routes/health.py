"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tamma_sync.api.deps import StoreDep
from tamma_sync.api.schemas import Readiness
from tamma_sync.store import is_database_unavailable
from tamma_sync.store.migrations import head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(store: StoreDep) -> JSONResponse:
    """Ready to serve: the database answers and its schema is at the newest migration."""
    expected = head_revision()
    try:
        current = await store.schema_revision()
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        body = Readiness(status="unavailable", database="unreachable", error=str(exc)[:200])
        return JSONResponse(body.to_wire(), status_code=503)
    ready = current == expected
    body = Readiness(
        status="ready" if ready else "unavailable",
        database="ok",
        schema_revision=current,
        expected_schema_revision=expected,
        error=None if ready else "database schema is not at the newest migration",
    )
    return JSONResponse(body.to_wire(), status_code=200 if ready else 503)
