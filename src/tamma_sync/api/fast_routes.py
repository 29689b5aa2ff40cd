"""The original API's busiest requests, served without FastAPI's work per request.

The .NET sync service sends every instance of every cycle as a request of its own, one at
a time: `PUT /api/workflows/instances/{id}`, then `POST /api/workflows/instances` for one
the PUT did not find. Dashboards page through `GET /api/workflows/instances` and poll
`GET /api/dashboard/summary`. For such a request FastAPI's routing and dependency solving
cost about as much CPU as everything else the app does (in one process without uvicorn: a
PUT answered 404, 0.35 ms, 0.17 ms without them; a first page, whose 18 query parameters
FastAPI reads one by one, inspecting the type of each again on every request, 0.57 ms,
0.35 ms without). So `FrontDoor` answers these with `FastRoute`s, which call the very
endpoint functions of `routes/` with their arguments resolved here as FastAPI resolves
them: the caller's tenant by the same dependency; a body read and parsed by the same
`JsonRequest`, after the tenant, then validated by the same model; the query validated by
the same model (`InstanceListQuery`) from the same values (the last of a repeated
parameter). A model returned is encoded as FastAPI encodes the route's `response_model`.

A request they are not sure to answer as FastAPI would (a body that is not JSON, is
malformed, or fails validation; a query that fails validation) is declined: handed on,
body replayed, to the app, where the FastAPI route answers it. Errors the endpoint or the
dependency raise (401, 403, 404, a database away) go to the app's error handlers. The
FastAPI routes stay what the OpenAPI document describes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import HTTPException, Response
from pydantic import BaseModel, ValidationError
from starlette.routing import compile_path

from tamma_sync.api.auth import bearer
from tamma_sync.api.deps import (
    get_store,
    manage_workflows_tenant,
    view_dashboard_tenant,
    view_workflows_tenant,
)
from tamma_sync.api.limits import JsonRequest
from tamma_sync.api.routes import dashboard, workflows
from tamma_sync.api.schemas import InstanceIn, InstanceListQuery
from tamma_sync.models import InstancePatch

Serve = Callable[[JsonRequest], Awaitable[Response]]
Model = TypeVar("Model", bound=BaseModel)


class Declined(Exception):
    """The request is the FastAPI route's to answer."""


class FastRoute:
    """`method` on `path` (a FastAPI route's template, matched as Starlette matches it, by
    which metrics label requests), answered by `serve`. Any other method (HEAD too) is the
    FastAPI routes' to answer."""

    def __init__(self, path: str, method: str, serve: Serve) -> None:
        self.path = path
        self.method = method
        self.serve = serve
        self._regex: re.Pattern[str]
        self._regex, _, self._convertors = compile_path(path)

    def path_params(self, path: str) -> dict[str, Any] | None:
        """The path's parameters if this route's template matches it, else None."""
        found = self._regex.match(path)
        if found is None:
            return None
        return {
            name: self._convertors[name].convert(value) for name, value in found.groupdict().items()
        }

    def __repr__(self) -> str:
        return f"FastRoute({self.method} {self.path})"


def routes() -> list[FastRoute]:
    """The routes `FrontDoor` answers."""
    return [
        FastRoute("/api/workflows/instances/{instance_id}", "PUT", _update_instance),
        FastRoute("/api/workflows/instances", "POST", _create_instance),
        FastRoute("/api/workflows/instances", "GET", _list_instances),
        FastRoute("/api/dashboard/summary", "GET", _summary),
    ]


async def _update_instance(request: JsonRequest) -> Response:
    value = await _json_value(request)
    tenant = await manage_workflows_tenant(request, await bearer(request))
    return await workflows.update_instance(
        instance_id=request.path_params["instance_id"],
        body=_valid(InstancePatch, value),
        store=await get_store(request),
        tenant=tenant,
    )


async def _create_instance(request: JsonRequest) -> Response:
    value = await _json_value(request)
    tenant = await manage_workflows_tenant(request, await bearer(request))
    return await workflows.create_instance(
        body=_valid(InstanceIn, value), store=await get_store(request), tenant=tenant
    )


async def _list_instances(request: JsonRequest) -> Response:
    tenant = await view_workflows_tenant(request, await bearer(request))
    return await workflows.list_instances(
        store=await get_store(request),
        tenant=tenant,
        query=_valid(InstanceListQuery, dict(request.query_params)),
    )


async def _summary(request: JsonRequest) -> Response:
    tenant = await view_dashboard_tenant(request, await bearer(request))
    summary = await dashboard.summary(store=await get_store(request), tenant=tenant)
    # As FastAPI encodes the route's `response_model_exclude_none` response.
    return Response(
        summary.model_dump_json(by_alias=True, exclude_none=True), media_type="application/json"
    )


async def _json_value(request: JsonRequest) -> Any:
    """The body's JSON value, read as FastAPI reads a JSON body; declined for any body
    FastAPI would not parse as JSON, or that fails to parse."""
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        raise Declined
    if not await request.body():
        raise Declined
    try:
        return await request.json()
    except HTTPException:
        raise Declined from None


def _valid(model: type[Model], value: Any) -> Model:
    try:
        return model.model_validate(value)
    except ValidationError:
        raise Declined from None
