"""The compatible routes the .NET sync and the dashboards use, in memory: the floor of the
framework tamma-sync is built on (FastAPI on uvicorn, uvloop and httptools, one process, as
`tamma-sync serve` runs), without a database, authentication, metrics or change log.

`python -m bench._memory_server --port 5090`

Answers as the original API's routes do (the shapes `bench.compat_api` reads): definitions
upserted by POST, instances created by POST and updated by PUT (404 when missing), pages by
`page`/`pageSize` (optionally by `definitionId`) in `createdAt` order with the exact total,
and the summary's definition count.
"""

from __future__ import annotations

import argparse
import bisect
import time
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI, Query, Response

app = FastAPI()
definitions: dict[str, dict[str, Any]] = {}
instances: dict[str, dict[str, Any]] = {}
#: (createdAt, id) of every instance, kept sorted: the list's order.
order: list[tuple[int, str]] = []
by_definition: dict[str, list[tuple[int, str]]] = {}

Json = Annotated[dict[str, Any], Body()]


@app.get("/readyz")
async def ready() -> dict[str, bool]:
    return {"ok": True}


@app.post("/api/workflows/definitions", status_code=201)
async def upsert_definition(body: Json, response: Response) -> dict[str, Any]:
    existing = definitions.get(body["id"])
    if existing is not None:
        response.status_code = 200
    definitions[body["id"]] = {**(existing or {}), **body, "syncedAt": int(time.time() * 1000)}
    return definitions[body["id"]]


@app.post("/api/workflows/instances", status_code=201)
async def create_instance(body: Json) -> dict[str, Any]:
    now = int(time.time() * 1000)
    instance = {"createdAt": now, "updatedAt": now, **body}
    old = instances.get(instance["id"])
    if old is not None:
        _unindex(old)
    instances[instance["id"]] = instance
    key = (instance["createdAt"], instance["id"])
    bisect.insort(order, key)
    bisect.insort(by_definition.setdefault(instance.get("definitionId", ""), []), key)
    return instance


@app.put("/api/workflows/instances/{instance_id}", response_model=None)
async def update_instance(instance_id: str, body: Json) -> dict[str, Any] | Response:
    instance = instances.get(instance_id)
    if instance is None:
        return Response(b'{"error":"Instance not found"}', 404, media_type="application/json")
    for key in ("status", "currentActivity", "variables", "finishedAt"):
        if key in body:
            instance[key] = body[key]
    instance["updatedAt"] = int(time.time() * 1000)
    return instance


@app.get("/api/workflows/instances/{instance_id}", response_model=None)
async def get_instance(instance_id: str) -> dict[str, Any] | Response:
    instance = instances.get(instance_id)
    if instance is None:
        return Response(b'{"error":"Instance not found"}', 404, media_type="application/json")
    return instance


@app.get("/api/workflows/instances")
async def list_instances(
    page: Annotated[int, Query()] = 1,
    page_size: Annotated[int, Query(alias="pageSize")] = 50,
    definition_id: Annotated[str | None, Query(alias="definitionId")] = None,
) -> dict[str, Any]:
    keys = by_definition.get(definition_id, []) if definition_id else order
    page, page_size = max(1, page), min(200, max(1, page_size))
    start = (page - 1) * page_size
    data = [instances[key] for _, key in keys[start : start + page_size]]
    return {"data": data, "total": len(keys), "page": page, "pageSize": page_size}


@app.get("/api/dashboard/summary")
async def summary() -> dict[str, Any]:
    return {"engineCount": 0, "workflowDefinitions": len(definitions), "recentEvents": []}


def _unindex(instance: dict[str, Any]) -> None:
    key = (instance["createdAt"], instance["id"])
    for keys in (order, by_definition.get(instance.get("definitionId", ""), [])):
        at = bisect.bisect_left(keys, key)
        if at < len(keys) and keys[at] == key:
            del keys[at]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning"
    )


if __name__ == "__main__":
    main()
