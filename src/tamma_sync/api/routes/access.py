"""`GET /api/access`: who the caller is, for the pages to offer only what its key may do."""

from __future__ import annotations

from fastapi import APIRouter

from tamma_sync.api.deps import CallerDep
from tamma_sync.api.schemas import ERROR_RESPONSES, CallerAccess

router = APIRouter(tags=["access"], responses=ERROR_RESPONSES)


@router.get("/api/access", response_model_exclude_none=True)
async def access(caller: CallerDep) -> CallerAccess:
    """The caller's tenant and scopes: any valid key may ask (401 without one once keys
    exist); on an open server, the default tenant and every scope."""
    return CallerAccess(
        tenant_id=caller.tenant_id, scopes=sorted(caller.scopes), key_id=caller.key_id
    )
