"""`/api/workflows/...`: the Tamma-compatible workflow API and its extensions.

Status codes, shapes and `{"error": …}` bodies follow the original Fastify routes
(the original Tamma API's); the extensions only add fields, filters and routes.
"""

from __future__ import annotations

import logging
import math
import string
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from tamma_sync.api.deps import (
    DeleteWorkflows,
    ManageWorkflows,
    StoreDep,
    SyncRunnerDep,
    ViewWorkflows,
)
from tamma_sync.api.errors import ApiError, not_found
from tamma_sync.api.filters import sub_status_filter
from tamma_sync.api.limits import JsonRoute
from tamma_sync.api.pagination import decode_cursor, encode_cursor
from tamma_sync.api.responses import JsonBytes, json_array, json_response
from tamma_sync.api.schemas import (
    DEFAULT_PAGE_SIZE,
    ERROR_RESPONSES,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    CancelledInstance,
    DefinitionIn,
    InstanceIn,
    InstanceJournal,
    InstanceList,
    InstanceListQuery,
    JournalEntry,
    Ok,
)
from tamma_sync.elsa import ElsaError, ElsaNotFound, ElsaUnavailable
from tamma_sync.models import (
    Definition,
    Instance,
    InstancePatch,
    SubStatus,
)
from tamma_sync.store import InstanceQuery, Store
from tamma_sync.sync import SyncRunner, SyncService

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/workflows", tags=["workflows"], responses=ERROR_RESPONSES, route_class=JsonRoute
)

#: Bounds of a journal page asked of ELSA (ELSA's own have none).
MAX_JOURNAL_PAGE_SIZE = 500
MAX_JOURNAL_PAGE = 1_000_000

#: What JavaScript's parseInt skips before the number: WhiteSpace and LineTerminator.
_JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def parse_int_like_js(value: str | int | None) -> float | None:
    """`value` read as JavaScript's `parseInt(value)` reads it (None for NaN, and for an
    absent value), which is how the original API read `page` and `pageSize`: leading
    whitespace, a sign, then the longest run of digits (hexadecimal after `0x`); the rest
    is ignored. A float, as JavaScript's numbers are: ±inf beyond the largest."""
    text = ("" if value is None else str(value)).lstrip(_JS_SPACE)
    sign = -1 if text.startswith("-") else 1
    text = text.removeprefix("-") if sign < 0 else text.removeprefix("+")
    hexadecimal = text[:2] in ("0x", "0X")
    if hexadecimal:
        text = text[2:]
    digits = string.hexdigits if hexadecimal else string.digits
    run = text[: len(text) - len(text.lstrip(digits))]
    if not run:
        return None
    try:
        return sign * (float(int(run, 16)) if hexadecimal else float(run))
    except OverflowError:  # float() of a decimal string is inf instead
        return sign * math.inf


@router.post(
    "/definitions",
    status_code=status.HTTP_201_CREATED,
    response_model_exclude_none=True,
    responses={200: {"model": Definition, "description": "The definition existed: updated"}},
)
async def upsert_definition(
    body: DefinitionIn, store: StoreDep, tenant: ManageWorkflows, response: Response
) -> Definition:
    """Create (201) or update (200) a definition. Fields not sent keep their stored value.

    `syncedAt` moves to now on every POST, as the original's did: it says when the
    definition was last received. A POST that changes nothing else records no change
    and keeps the revision."""
    [(definition, created)] = await store.upsert_definitions(tenant, [body], refresh_synced_at=True)
    if not created:
        response.status_code = status.HTTP_200_OK
    return definition


@router.get("/definitions", response_model=list[Definition])
async def list_definitions(store: StoreDep, tenant: ViewWorkflows) -> JsonBytes:
    """Every definition, as a bare array (ordered by id)."""
    return JsonBytes(json_array(json for _, json in await store.list_definition_json(tenant)))


@router.get("/definitions/{definition_id}", response_model_exclude_none=True)
async def get_definition(definition_id: str, store: StoreDep, tenant: ViewWorkflows) -> Definition:
    definition = await store.get_definition(tenant, definition_id)
    if definition is None:
        raise not_found("Definition")
    return definition


@router.post(
    "/instances",
    status_code=status.HTTP_201_CREATED,
    response_model=Instance,
    response_model_exclude_none=True,
)
async def create_instance(body: InstanceIn, store: StoreDep, tenant: ManageWorkflows) -> JsonBytes:
    """Create an instance (201). A caller-sent id is kept, and an instance already stored
    under it is replaced; an empty or missing id gets a UUID."""
    if not body.id:
        body.id = str(uuid.uuid4())
    instance = await store.create_instance(tenant, body)
    # Encoded here: the .NET sync's every request, where FastAPI would validate the stored
    # instance against its own model again before encoding it.
    return json_response(instance.to_wire(), status.HTTP_201_CREATED)


@router.get("/instances", response_model=InstanceList)
async def list_instances(
    store: StoreDep, tenant: ViewWorkflows, query: Annotated[InstanceListQuery, Query()]
) -> JsonBytes:
    """A page of instances, in a total order on (orderBy, id).

    Compatible paging: `page` (from 1) and `pageSize` (default 50, at most 200), read as
    leniently as the original read them, so a caller it served is never refused here;
    the extensions' parameters are checked. For deep pages follow `nextCursor` instead:
    every page then costs what the first one does.
    """
    # The original's `Math.max(1, parseInt(page) || 1)` and `Math.min(200, Math.max(1,
    # parseInt(pageSize) || 50))`, with the page capped at MAX_PAGE: an empty page already.
    page_number = int(min(MAX_PAGE, max(1, parse_int_like_js(query.page) or 1)))
    size = int(min(MAX_PAGE_SIZE, max(1, parse_int_like_js(query.page_size) or DEFAULT_PAGE_SIZE)))
    order_by = query.order_by
    descending = (query.order_direction or ("asc" if order_by == "createdAt" else "desc")) == "desc"
    instance_query = InstanceQuery(
        definition_id=query.definition_id or None,
        sub_statuses=sub_status_filter(query.status, query.sub_status),
        correlation_id=query.correlation_id,
        source_id=query.source_id or None,
        created_since=query.created_since,
        created_before=query.created_before,
        updated_since=query.updated_since,
        updated_before=query.updated_before,
        id_prefix=query.id_prefix or None,
        current_activity=query.current_activity or None,
        status_text=query.status_text or None,
        order_by=order_by,
        descending=descending,
        limit=size,
        offset=(page_number - 1) * size,
        after=decode_cursor(query.cursor, order_by, descending) if query.cursor else None,
        with_total=query.include_total,
    )
    result = await store.list_instances(tenant, instance_query)
    body: dict[str, Any] = {"data": result.wire, "page": page_number, "pageSize": size}
    if result.total is not None:
        body["total"] = result.total
    if result.next_after is not None:
        body["nextCursor"] = encode_cursor(order_by, descending, result.next_after)
    return json_response(body)


@router.get("/instances/{instance_id}", response_model_exclude_none=True)
async def get_instance(instance_id: str, store: StoreDep, tenant: ViewWorkflows) -> Instance:
    instance = await store.get_instance(tenant, instance_id)
    if instance is None:
        raise not_found("Instance")
    return instance


@router.put(
    "/instances/{instance_id}",
    response_model=Instance,
    response_model_exclude_none=True,
    responses={404: {"description": "Instance not found"}},
)
async def update_instance(
    instance_id: str, body: InstancePatch, store: StoreDep, tenant: ManageWorkflows
) -> JsonBytes:
    """Update `status`, `subStatus`, `currentActivity`, `variables` (replaced, not merged),
    `updatedAt` and `finishedAt` of an instance; `id`, `definitionId` and the tenant never
    change. A PUT that changes nothing changes nothing: no new `updatedAt`, no event."""
    instance = await store.update_instance(tenant, instance_id, body)
    if instance is None:
        raise not_found("Instance")
    return json_response(instance.to_wire())


@router.post(
    "/instances/{instance_id}/cancel",
    response_model_exclude_none=True,
    responses={
        202: {"model": CancelledInstance, "description": "ELSA is still cancelling it"},
        404: {"description": "Instance not found"},
        409: {"description": "It has ended, or its ELSA source is not synced here"},
        502: {"description": "ELSA refused or cannot cancel"},
        503: {"description": "ELSA unreachable"},
    },
)
async def cancel_instance(
    instance_id: str,
    store: StoreDep,
    tenant: ManageWorkflows,
    runner: SyncRunnerDep,
    response: Response,
) -> CancelledInstance:
    """Cancel an instance. One mirrored from ELSA is cancelled in ELSA, which is then read
    back (200 once ELSA has ended it, 202 while it is still cancelling); an instance that
    did not come from ELSA is marked cancelled in the mirror, as the original API did."""
    instance = await store.get_instance(tenant, instance_id)
    if instance is None:
        raise not_found("Instance")
    if instance.sub_status is SubStatus.CANCELLED:
        return CancelledInstance(**instance.model_dump(), message="Instance already cancelled")
    if instance.source_id is None:
        return await _cancel_in_mirror(store, tenant, instance)
    if instance.has_ended:
        raise ApiError(
            409, f"Instance has already ended ({instance.sub_status}); it cannot be cancelled"
        )
    source = _elsa_source(runner, tenant, instance, "cancel it")
    with _asking_elsa(source, "the cancel"):
        try:
            ended = await source.cancel(instance_id)
        except ElsaNotFound as exc:
            raise ApiError(
                502,
                f"ELSA source {instance.source_id!r} cannot cancel instances "
                "(ELSA has a cancel route from 3.1)",
            ) from exc
    cancelled = await store.get_instance(tenant, instance_id)
    if cancelled is None:
        raise not_found("Instance")
    log.info("instance %s cancelled in ELSA source %s", instance_id, instance.source_id)
    if ended:
        return CancelledInstance(**cancelled.model_dump())
    response.status_code = status.HTTP_202_ACCEPTED
    return CancelledInstance(
        **cancelled.model_dump(),
        message="Cancel sent to ELSA; it has not ended the instance yet",
    )


@router.get(
    "/instances/{instance_id}/journal",
    response_model_exclude_none=True,
    responses={
        404: {"description": "Instance not found"},
        409: {"description": "It did not come from an ELSA source synced here"},
        502: {"description": "ELSA refused"},
        503: {"description": "ELSA unreachable"},
    },
)
async def instance_journal(
    instance_id: str,
    store: StoreDep,
    tenant: ViewWorkflows,
    runner: SyncRunnerDep,
    page: Annotated[int, Query(ge=0, le=MAX_JOURNAL_PAGE, description="Zero-based.")] = 0,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_JOURNAL_PAGE_SIZE)] = 100,
) -> InstanceJournal:
    """A page of the instance's execution journal (every activity's Started, Completed,
    Faulted… in order), read from its ELSA source on request: the mirror does not keep it.
    Only for an instance mirrored from an ELSA source this server syncs."""
    instance = await store.get_instance(tenant, instance_id)
    if instance is None:
        raise not_found("Instance")
    source = _elsa_source(runner, tenant, instance, "read its journal")
    with _asking_elsa(source, "the journal"):
        entries, total = await source.journal(instance_id, page, page_size)
    return InstanceJournal(
        instance_id=instance_id,
        source_id=source.source.id,
        page=page,
        page_size=page_size,
        total=total,
        entries=[JournalEntry(**entry) for entry in entries],
    )


@contextmanager
def _asking_elsa(source: SyncService, what: str) -> Iterator[None]:
    """ELSA's failures as answers: 503 while it is unreachable, 502 when it refused `what`."""
    try:
        yield
    except ElsaUnavailable as exc:
        raise ApiError(503, f"ELSA source {source.source.id!r} is unavailable: {exc}") from exc
    except ElsaError as exc:
        raise ApiError(502, f"ELSA source {source.source.id!r} refused {what}: {exc}") from exc


def _elsa_source(
    runner: SyncRunner | None, tenant: str, instance: Instance, action: str
) -> SyncService:
    """The sync of the ELSA source `instance` came from; 409 if there is none here."""
    if instance.source_id is None:
        raise ApiError(409, f"Instance did not come from an ELSA source: nothing to {action}")
    source = runner.source(tenant, instance.source_id) if runner is not None else None
    if source is None:
        raise ApiError(
            409,
            f"Instance is mirrored from ELSA source {instance.source_id!r}, which this server "
            f"does not sync: {action} there",
        )
    return source


async def _cancel_in_mirror(store: Store, tenant: str, instance: Instance) -> CancelledInstance:
    cancelled = await store.update_instance(
        tenant, instance.id, InstancePatch(status="cancelled", sub_status=SubStatus.CANCELLED)
    )
    if cancelled is None:
        raise not_found("Instance")
    log.info("instance %s cancelled (previous status %r)", instance.id, instance.status)
    return CancelledInstance(**cancelled.model_dump())


@router.delete("/instances/{instance_id}", responses={404: {"description": "Instance not found"}})
async def delete_instance(instance_id: str, store: StoreDep, tenant: DeleteWorkflows) -> Ok:
    if not await store.delete_instance(tenant, instance_id):
        raise not_found("Instance")
    return Ok()
