"""The .NET sync service's instance writes, served without FastAPI's work per request.

The .NET service sends every instance of every cycle as a request of its own, one at a
time: `PUT /api/workflows/instances/{id}`, then `POST /api/workflows/instances` for one the
PUT did not find. For such a request FastAPI's routing and dependency solving cost about as
much CPU as everything else the app does (a PUT answered 404, in one process without
uvicorn: 0.35 ms, 0.17 ms without them). So these two are matched first by `FastWrite`
routes, which call the very endpoint functions of `routes/workflows.py` with their
arguments resolved here as FastAPI resolves them: the body read and parsed by the same
`JsonRequest`, the caller's tenant by the same dependency, after the body and before the
body's validation, by the same model.

A request they are not sure to answer as FastAPI would (a body that is not JSON, is
malformed, or fails validation) is declined: handed, its body replayed, to the app's
router again, where the FastAPI route answers it. Errors the endpoint or the dependency
raise (401, 403, 404, a database away) reach the app's error handlers as before. The
FastAPI routes stay what the OpenAPI document describes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import HTTPException, Response
from pydantic import BaseModel, ValidationError
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from tamma_sync.api.auth import bearer
from tamma_sync.api.deps import get_store, manage_workflows_tenant
from tamma_sync.api.limits import JsonRequest, replayed
from tamma_sync.api.routes import workflows
from tamma_sync.api.schemas import InstanceIn
from tamma_sync.models import InstancePatch

#: Set in the scope of a request a `FastWrite` declined: the router then passes it by.
DECLINED = "tamma_sync.declined"

Serve = Callable[[JsonRequest], Awaitable[Response]]
Model = TypeVar("Model", bound=BaseModel)


class Declined(Exception):
    """The request is the FastAPI route's to answer."""


class FastWrite(Route):
    """`method` on `path` (a FastAPI route's template, by which metrics label requests),
    answered by `serve`; any other method is not matched here at all (FastAPI's routes
    answer 405 as they did)."""

    def __init__(self, path: str, method: str, serve: Serve) -> None:
        super().__init__(path, _Served(serve), methods=[method], include_in_schema=False)

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


def routes() -> list[FastWrite]:
    """The routes to put first in the app's router."""
    return [
        FastWrite("/api/workflows/instances/{instance_id}", "PUT", _update_instance),
        FastWrite("/api/workflows/instances", "POST", _create_instance),
    ]


async def _update_instance(request: JsonRequest) -> Response:
    value = await _json_value(request)
    tenant = await _tenant(request)
    return await workflows.update_instance(
        instance_id=request.path_params["instance_id"],
        body=_valid(InstancePatch, value),
        store=await get_store(request),
        tenant=tenant,
    )


async def _create_instance(request: JsonRequest) -> Response:
    value = await _json_value(request)
    tenant = await _tenant(request)
    return await workflows.create_instance(
        body=_valid(InstanceIn, value), store=await get_store(request), tenant=tenant
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


async def _tenant(request: JsonRequest) -> str:
    """The caller's tenant, as the routes' `ManageWorkflows` dependency finds it."""
    return await manage_workflows_tenant(request, await bearer(request))


def _valid(model: type[Model], value: Any) -> Model:
    try:
        return model.model_validate(value)
    except ValidationError:
        raise Declined from None
