"""FastAPI dependencies: what a route needs, resolved from the app's state and the request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tamma_sync.models import DEFAULT_TENANT_ID
from tamma_sync.settings import Settings
from tamma_sync.store import Store


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_tenant() -> str:
    """The tenant every query of this request is scoped to."""
    return DEFAULT_TENANT_ID


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TenantDep = Annotated[str, Depends(get_tenant)]
