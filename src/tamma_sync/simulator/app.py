"""The ASGI app: ELSA 3 routes under the configured prefix, control routes under /_simulator.

Every ELSA route goes through one wrapper that applies faults, authentication and JSON
serialisation; handlers run in the threadpool so a slow query never stalls the event loop
(and a `slow` fault never blocks other requests), except reads of one instance by id, which
take constant time (they wait on the loop for the simulator's lock while a list holds it):
the threadpool's hand-off was 40 % of the simulator's CPU answering a sync's detail requests
(10.1 s of CPU against 6.0 s run on the loop, for 18,084 requests), CPU a real ELSA spends
on a machine of its own. Routes follow the configured release
(versions.py): a route it lacks is not there, and ASP.NET answers an unknown route 404 and
a known path with another method 405, both with an empty body.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from tamma_sync.simulator.catalog import JSON
from tamma_sync.simulator.clock import duration_ticks
from tamma_sync.simulator.control import control_routes
from tamma_sync.simulator.wire import (
    BadRequest,
    Fields,
    InternalError,
    definition_query,
    instance_query,
    journal_window,
    version_filter,
)

if TYPE_CHECKING:
    from tamma_sync.simulator.simulator import ElsaSimulator

_JSON_TYPE: Final = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer: status and a JSON body (None: empty body)."""

    status: int = 200
    body: JSON | None = None


def _found(body: JSON | None) -> Reply:
    return Reply(404) if body is None else Reply(200, body)


Handler = Callable[[Request, bytes], Reply]


def create_app(simulator: ElsaSimulator) -> Starlette:
    """Build the app over a simulator (the state stays in the simulator)."""
    elsa = _elsa_routes(simulator)
    routes: list[BaseRoute] = [Mount("/_simulator", routes=control_routes(simulator))]
    routes += [Mount(simulator.config.prefix, routes=elsa)] if simulator.config.prefix else elsa
    return Starlette(routes=routes, exception_handlers={HTTPException: _empty_error})


async def _empty_error(_: Request, error: Exception) -> Response:
    """An unknown route (404) or method (405): status only, as ASP.NET answers."""
    assert isinstance(error, HTTPException)
    return Response(status_code=error.status_code, headers=error.headers)


def _elsa_routes(sim: ElsaSimulator) -> list[BaseRoute]:
    offset = duration_ticks(sim.config.server_utc_offset)
    release = sim.config.release

    def route(
        path: str,
        handler: Handler,
        method: str = "GET",
        *,
        anonymous: bool = False,
        inline: bool = False,
    ) -> Route:
        return Route(path, _endpoint(sim, handler, anonymous, inline), methods=[method])

    def query(request: Request) -> Fields:
        return Fields.from_query(request.query_params)

    def param(request: Request, name: str) -> str:
        return str(request.path_params[name])

    def version(_: Request, __: bytes) -> Reply:
        return Reply(200, {"packageVersion": sim.config.package_version})

    def login(_: Request, body: bytes) -> Reply:
        fields = Fields.from_body(body)
        username, password = fields.text("username") or "", fields.text("password") or ""
        return Reply(200, sim.auth.login(username, password))

    def refresh(request: Request, _: bytes) -> Reply:
        tokens = sim.auth.refresh(request.headers.get("authorization"))
        return Reply(401) if tokens is None else Reply(200, tokens)

    def list_definitions(request: Request, _: bytes) -> Reply:
        return Reply(200, sim.list_definitions(definition_query(query(request))))

    def by_definition_id(request: Request, _: bytes) -> Reply:
        options = version_filter(query(request).text("versionOptions") or "Latest")
        assert options is not None
        return _found(sim.definition(param(request, "definition_id"), options))

    def by_id(request: Request, _: bytes) -> Reply:
        return _found(sim.definition_version(param(request, "version_id")))

    def many_by_id(request: Request, _: bytes) -> Reply:
        return Reply(200, sim.definition_versions(query(request).strings("ids") or []))

    def count(_: Request, __: bytes) -> Reply:
        return Reply(200, {"count": sim.definition_count()})

    def delete_definition(request: Request, _: bytes) -> Reply:
        deleted = sim.delete_definition(param(request, "definition_id"))
        return Reply(404 if deleted is None else 204)

    def delete_version(request: Request, _: bytes) -> Reply:
        deleted = sim.delete_definition_version(param(request, "version_id"))
        return Reply(404 if deleted is None else 204)

    def list_instances_get(request: Request, _: bytes) -> Reply:
        return Reply(200, sim.list_instances(instance_query(query(request), offset)))

    def list_instances_post(_: Request, body: bytes) -> Reply:
        return Reply(200, sim.list_instances(instance_query(Fields.from_body(body), offset)))

    def instance(request: Request, _: bytes) -> Reply:
        return _found(sim.instance(param(request, "instance_id")))

    def variables(request: Request, _: bytes) -> Reply:
        return Reply(200, sim.instance_variables(param(request, "instance_id")))

    def execution_state(request: Request, _: bytes) -> Reply:
        return _found(sim.instance_execution_state(param(request, "instance_id")))

    def journal(request: Request, _: bytes) -> Reply:
        skip, take = journal_window(query(request))
        return Reply(200, sim.instance_journal(param(request, "instance_id"), skip, take))

    def delete_instance(request: Request, _: bytes) -> Reply:
        deleted = sim.api_delete_instance(param(request, "instance_id"))
        return Reply(204 if deleted else 404)

    def cancel(request: Request, _: bytes) -> Reply:
        # Always 200 with an empty body: the endpoint ignores whether anything was
        # cancelled (src/modules/Elsa.Workflows.Api/Endpoints/WorkflowInstances/Cancel/
        # Endpoint.cs, `CancelWorkflowAsync` then `SendOkAsync`).
        sim.api_cancel_instance(param(request, "instance_id"))
        return Reply(200)

    def bulk_delete(_: Request, body: bytes) -> Reply:
        fields = Fields.from_body(body)
        deleted = sim.bulk_delete_instances(
            fields.strings("ids"),
            fields.text("workflowDefinitionId"),
            fields.strings("workflowDefinitionIds"),
        )
        return Reply(200, {"deleted": deleted})

    definitions = "/workflow-definitions"
    instances = "/workflow-instances"
    by_release: list[BaseRoute] = []
    if release.has_list_post:
        by_release.append(route(instances, list_instances_post, "POST"))
    if release.has_variables_route:
        by_release.append(route(f"{instances}/{{instance_id}}/variables", variables, inline=True))
    if release.has_execution_state:
        by_release.append(
            route(f"{instances}/{{instance_id}}/execution-state", execution_state, inline=True)
        )
    if release.has_cancel_route:
        by_release.append(route(f"/cancel{instances}/{{instance_id}}", cancel, "POST"))
    return [
        route("/package/version", version, anonymous=True),
        route("/identity/login", login, "POST", anonymous=True),
        route("/identity/refresh-token", refresh, "POST", anonymous=True),
        route(definitions, list_definitions),
        route(f"{definitions}/by-definition-id/{{definition_id}}", by_definition_id),
        route(f"{definitions}/by-id/{{version_id}}", by_id),
        route(f"{definitions}/many-by-id", many_by_id),
        route(f"{definitions}/query/count", count),
        route(f"{definitions}/{{definition_id}}", by_definition_id),
        route(f"{definitions}/{{definition_id}}", delete_definition, "DELETE"),
        route("/workflow-definition-versions/{version_id}", delete_version, "DELETE"),
        route(instances, list_instances_get),
        route(f"{instances}/{{instance_id}}", instance, inline=True),
        route(f"{instances}/{{instance_id}}", delete_instance, "DELETE"),
        route(f"{instances}/{{instance_id}}/journal", journal),
        *by_release,
        route("/bulk-actions/delete/workflow-instances", bulk_delete, "POST"),
        route("/bulk-actions/delete/workflow-instances/by-id", bulk_delete, "POST"),
    ]


def _endpoint(
    sim: ElsaSimulator, handler: Handler, anonymous: bool, inline: bool
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: faults, then authentication, then the handler (on the event loop
    if `inline`, else in the threadpool), then serialisation."""

    async def endpoint(request: Request) -> Response:
        path = request.url.path
        slow = sim.faults.fire("slow", path)
        if slow is not None:
            await asyncio.sleep(slow.delay)
        if sim.faults.fire("unavailable", path) is not None:
            return Response(b"Service Unavailable", 503, media_type="text/plain")
        if sim.faults.fire("error", path) is not None:
            return Response(status_code=500)
        authorization = request.headers.get("authorization")
        if sim.config.require_auth and not anonymous and not sim.auth.allows(authorization):
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body = await request.body()
        try:
            if inline:
                reply = handler(request, body)
            else:
                reply = await run_in_threadpool(handler, request, body)
        except BadRequest as error:
            reply = Reply(400, error.body())
        except InternalError:
            reply = Reply(500)
        return _render(sim, path, reply)

    return endpoint


def _render(sim: ElsaSimulator, path: str, reply: Reply) -> Response:
    body = reply.body
    if body is None:
        return Response(status_code=reply.status)
    if isinstance(body, dict) and _is_page(body):
        short = sim.faults.fire("short_page", path)
        if short is not None:
            body = _shortened(body, short.drop)
    data = orjson.dumps(body)
    if sim.faults.fire("malformed", path) is not None:
        data = data[: len(data) // 2]
    return Response(data, reply.status, media_type=_JSON_TYPE)


def _is_page(body: dict[str, JSON]) -> bool:
    items = body.get("items")
    return "totalCount" in body and isinstance(items, list) and bool(items)


def _shortened(body: dict[str, JSON], drop: int | None) -> dict[str, JSON]:
    """The page without its last `drop` items (default: half); totalCount unchanged."""
    items = body["items"]
    assert isinstance(items, list)
    dropped = math.ceil(len(items) / 2) if drop is None else drop
    return {**body, "items": items[: max(len(items) - dropped, 0)]}
