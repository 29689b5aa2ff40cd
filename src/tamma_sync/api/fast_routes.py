"""The original API's busiest requests, served without FastAPI's work per request.

The .NET sync service sends every instance of every cycle as a request of its own, one at
a time: `PUT /api/workflows/instances/{id}`, then `POST /api/workflows/instances` for one
the PUT did not find. Dashboards page through `GET /api/workflows/instances` and poll
`GET /api/dashboard/summary`. For such a request FastAPI's routing and dependency solving
cost about as much CPU as everything else the app does (in one process without uvicorn: a
PUT answered 404, 0.35 ms, 0.17 ms without them; a first page, whose 18 query parameters
FastAPI reads one by one, inspecting the type of each again on every request, 0.57 ms,
0.35 ms without). So these are matched first by `FastRoute`s, which call the very endpoint
functions of `routes/` with their arguments resolved here as FastAPI resolves them: the
caller's tenant by the same dependency; a body read and parsed by the same `JsonRequest`,
after the tenant, then validated by the same model; the query validated by the same model
(`InstanceListQuery`) from the same values (the last of a repeated parameter). A model
returned is encoded as FastAPI encodes the route's `response_model`.

A request they are not sure to answer as FastAPI would (a body that is not JSON, is
malformed, or fails validation; a query that fails validation) is declined: handed, its
body replayed, to the app's router again, where the FastAPI route answers it. Errors the
endpoint or the dependency raise (401, 403, 404, a database away) reach the app's error
handlers as before. The FastAPI routes stay what the OpenAPI document describes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import HTTPException, Response
from pydantic import BaseModel, ValidationError
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from tamma_sync.api.auth import bearer
from tamma_sync.api.deps import (
    get_store,
    manage_workflows_tenant,
    view_dashboard_tenant,
    view_workflows_tenant,
)
from tamma_sync.api.limits import JsonRequest, replayed
from tamma_sync.api.routes import dashboard, workflows
from tamma_sync.api.schemas import InstanceIn, InstanceListQuery
from tamma_sync.models import InstancePatch

#: Set in the scope of a request a `FastRoute` declined: the router then passes it by.
DECLINED = "tamma_sync.declined"

Serve = Callable[[JsonRequest], Awaitable[Response]]
Model = TypeVar("Model", bound=BaseModel)


class Declined(Exception):
    """The request is the FastAPI route's to answer."""


class FastRoute(Route):
    """`method` on `path` (a FastAPI route's template, by which metrics label requests),
    answered by `serve`; any other method (HEAD too) is not matched here at all: FastAPI's
    routes answer it as they did."""

    def __init__(self, path: str, method: str, serve: Serve) -> None:
        super().__init__(path, _Served(serve), methods=[method], include_in_schema=False)
        self.methods = {method}  # not HEAD as well, which Starlette adds to a GET

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get(DECLINED):
            return Match.NONE, {}
        match, child_scope = super().matches(scope)
        if match != Match.FULL:
            return Match.NONE, {}
        return match, {**child_scope, "route": self}


class _Served:
    """An ASGI app answering with `serve`, or declining to the app's router."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = JsonRequest(scope, receive)
        try:
            response = await self._serve(request)
        except Declined:
            scope[DECLINED] = True
            await scope["router"](scope, replayed(await request.body(), receive), send)
            return
        await response(scope, receive, send)


def routes() -> list[FastRoute]:
    """The routes to put first in the app's router."""
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
