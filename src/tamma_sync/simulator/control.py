"""The control API under /_simulator: drive the simulator from another process.

JSON in and out, no authentication, never affected by faults. See README.md for routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tamma_sync.simulator.catalog import JSON
from tamma_sync.simulator.faults import FAULT_KINDS, FaultSpec
from tamma_sync.simulator.instances import SubStatus

if TYPE_CHECKING:
    from tamma_sync.simulator.simulator import ElsaSimulator

#: Instances per control-API snapshot unless `limit` says otherwise (page with `offset`).
SNAPSHOT_LIMIT = 10_000


class _Invalid(Exception):
    """A control request that cannot be carried out (400, or 404 for unknown ids)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _json(body: JSON, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


async def _body(request: Request) -> dict[str, object]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise _Invalid(f"invalid JSON: {error}") from error
    if not isinstance(data, dict):
        raise _Invalid("the body must be a JSON object")
    return data


def _int(data: dict[str, object], key: str, default: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Invalid(f"{key} must be a non-negative integer")
    return value


def _ids(data: dict[str, object]) -> list[str]:
    ids = data.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise _Invalid("ids must be a list of strings")
    return [str(i) for i in ids]


def _optional_str(data: dict[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _Invalid(f"{key} must be a string")
    return value


def _fault(data: dict[str, object]) -> FaultSpec:
    kind = data.get("kind")
    if kind not in FAULT_KINDS:
        raise _Invalid(f"kind must be one of {', '.join(FAULT_KINDS)}")
    count = data.get("count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise _Invalid("count must be a positive integer or null")
    drop = data.get("drop")
    if drop is not None and (not isinstance(drop, int) or drop < 0):
        raise _Invalid("drop must be a non-negative integer or null")
    probability, delay = data.get("probability", 1.0), data.get("delay", 1.0)
    if not isinstance(probability, int | float) or not isinstance(delay, int | float):
        raise _Invalid("probability and delay must be numbers")
    return FaultSpec(
        kind=kind,  # type: ignore[arg-type]  # checked against FAULT_KINDS above
        count=count,
        probability=float(probability),
        path=_optional_str(data, "path"),
        delay=float(delay),
        drop=drop,
    )


def control_routes(sim: ElsaSimulator) -> list[BaseRoute]:
    """The /_simulator routes over one simulator."""

    def state(_: Request, __: dict[str, object]) -> JSON:
        return {
            "now": sim.now(),
            "definitions": sim.definition_count(),
            "instances": sim.counts(),
            "pendingCommits": sim.pending_commits(),
            "faults": [spec.to_wire() for spec in sim.faults.active()],
        }

    def step(_: Request, data: dict[str, object]) -> JSON:
        report = sim.step(_int(data, "steps", 1))
        return {
            "created": report.created,
            "updated": report.updated,
            "deleted": report.deleted,
            "silent": report.silent,
            "now": sim.now(),
        }

    def create(_: Request, data: dict[str, object]) -> JSON:
        try:
            ids = sim.create_instances(
                _int(data, "count", 1), definition_id=_optional_str(data, "definitionId")
            )
        except ValueError as error:
            raise _Invalid(str(error)) from error
        return {"ids": ids}

    def progress(_: Request, data: dict[str, object]) -> JSON:
        target = _optional_str(data, "to")
        if target is not None and target not in SubStatus.__members__:
            raise _Invalid(f"to must be one of {', '.join(SubStatus.__members__)}")
        try:
            return {"updated": sim.progress_instances(_ids(data), to=target)}
        except ValueError as error:
            raise _Invalid(str(error)) from error

    def delete(_: Request, data: dict[str, object]) -> JSON:
        return {"deleted": sim.delete_instances(_ids(data))}

    def cancel(_: Request, data: dict[str, object]) -> JSON:
        return {"updated": sim.cancel_instances(_ids(data))}

    def silent(_: Request, data: dict[str, object]) -> JSON:
        return {"updated": sim.silent_commit(_ids(data))}

    def flush(_: Request, data: dict[str, object]) -> JSON:
        ids = _ids(data) if data.get("ids") is not None else None
        return {"flushed": sim.flush_commits(ids)}

    def definition_action(
        action: Callable[[str], JSON],
    ) -> Callable[[Request, dict[str, object]], JSON]:
        def run(request: Request, _: dict[str, object]) -> JSON:
            definition_id = str(request.path_params["definition_id"])
            try:
                return action(definition_id)
            except KeyError as error:
                raise _Invalid(f"unknown definition {definition_id!r}", 404) from error
            except ValueError as error:
                raise _Invalid(str(error), 409) from error

        return run

    def save_draft(definition_id: str) -> JSON:
        saved = sim.save_draft(definition_id)
        return {"id": saved.version_id, "version": saved.version, "inPlace": saved.in_place}

    def publish(definition_id: str) -> JSON:
        return {"id": sim.publish(definition_id)}

    def delete_definition(definition_id: str) -> JSON:
        deleted = sim.delete_definition(definition_id)
        if deleted is None:
            raise KeyError(definition_id)
        return {"deletedInstances": deleted}

    def snapshot(request: Request, _: dict[str, object]) -> JSON:
        params = request.query_params
        try:
            offset = int(params.get("offset", "0"))
            limit = int(params.get("limit", SNAPSHOT_LIMIT))
        except ValueError as error:
            raise _Invalid("offset and limit must be integers") from error
        details = params.get("details", "true").lower() != "false"
        return sim.snapshot(offset=offset, limit=limit, details=details).to_wire()

    def list_faults(_: Request, __: dict[str, object]) -> JSON:
        return [spec.to_wire() for spec in sim.faults.active()]

    def add_fault(_: Request, data: dict[str, object]) -> JSON:
        return sim.faults.add(_fault(data)).to_wire()

    def clear_faults(_: Request, __: dict[str, object]) -> JSON:
        sim.faults.clear()
        return []

    def revoke(_: Request, __: dict[str, object]) -> JSON:
        sim.auth.revoke_all()
        return {}

    def route(
        path: str, handler: Callable[[Request, dict[str, object]], JSON], method: str = "GET"
    ) -> Route:
        return Route(path, _endpoint(handler), methods=[method])

    return [
        route("/state", state),
        route("/step", step, "POST"),
        route("/instances", create, "POST"),
        route("/instances/progress", progress, "POST"),
        route("/instances/delete", delete, "POST"),
        route("/instances/cancel", cancel, "POST"),
        route("/instances/silent", silent, "POST"),
        route("/commits/flush", flush, "POST"),
        route("/definitions/{definition_id}/save-draft", definition_action(save_draft), "POST"),
        route("/definitions/{definition_id}/publish", definition_action(publish), "POST"),
        route("/definitions/{definition_id}", definition_action(delete_definition), "DELETE"),
        route("/snapshot", snapshot),
        route("/faults", list_faults),
        route("/faults", add_fault, "POST"),
        route("/faults", clear_faults, "DELETE"),
        route("/tokens/revoke", revoke, "POST"),
    ]


def _endpoint(
    handler: Callable[[Request, dict[str, object]], JSON],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            data = await _body(request)
            return _json(await run_in_threadpool(handler, request, data))
        except _Invalid as error:
            return _json({"error": str(error)}, error.status)

    return endpoint
