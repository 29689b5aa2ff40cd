"""FastAPI dependencies: what a route needs, resolved from the app's state and the request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tamma_sync.api.auth import Principal, caller, tenant_for
from tamma_sync.api.body_cache import BodyCache
from tamma_sync.models import Scope
from tamma_sync.settings import Settings
from tamma_sync.store import Store
from tamma_sync.sync import SyncRunner


# Async, though they never wait: FastAPI runs a plain `def` dependency in its thread pool,
# a thread hop on every request.
async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_body_cache(request: Request) -> BodyCache:
    cache: BodyCache = request.app.state.body_cache
    return cache


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_sync_runner(request: Request) -> SyncRunner | None:
    runner: SyncRunner | None = request.app.state.sync_runner
    return runner


StoreDep = Annotated[Store, Depends(get_store)]
SyncRunnerDep = Annotated[SyncRunner | None, Depends(get_sync_runner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BodyCacheDep = Annotated[BodyCache, Depends(get_body_cache)]

# Who is calling, for routes any valid key may use.
CallerDep = Annotated[Principal, Depends(caller)]

# The caller's tenant, for a caller holding the named scope: every query is scoped by it.
# The `*_tenant` functions are also called directly, by the routes of `fast_routes`.
view_workflows_tenant = tenant_for(Scope.WORKFLOWS_VIEW)
ViewWorkflows = Annotated[str, Depends(view_workflows_tenant)]
manage_workflows_tenant = tenant_for(Scope.WORKFLOWS_MANAGE)
ManageWorkflows = Annotated[str, Depends(manage_workflows_tenant)]
DeleteWorkflows = Annotated[str, Depends(tenant_for(Scope.WORKFLOWS_DELETE))]
view_dashboard_tenant = tenant_for(Scope.DASHBOARD_VIEW)
ViewDashboard = Annotated[str, Depends(view_dashboard_tenant)]
WriteSync = Annotated[str, Depends(tenant_for(Scope.SYNC_WRITE))]
ReportEngines = Annotated[str, Depends(tenant_for(Scope.ENGINES_REPORT))]
