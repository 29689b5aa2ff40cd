"""Live streams (Server-Sent Events): one instance's changes, and every change.

Every frame carries `id: <seq>`, the change-log sequence number, so a client that
reconnects with `Last-Event-ID` gets exactly the changes it missed — on any replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status

from tamma_sync.api.deps import SettingsDep, StoreDep, ViewWorkflows
from tamma_sync.api.errors import not_found
from tamma_sync.api.filters import sub_status_filter
from tamma_sync.api.sse import (
    EVENT_STREAM_RESPONSE,
    HEARTBEAT,
    EventStream,
    frame,
    retry_hint,
)
from tamma_sync.feed import ChangeFeed, ChangeFilter, Subscription
from tamma_sync.models import ENDED_SUB_STATUSES, Change, ChangeOp, EntityKind, SubStatus
from tamma_sync.store import Store

router = APIRouter(tags=["events"])

#: Change-log rows read per query while backfilling a resumed stream.
BACKFILL_PAGE = 500

LastEventId = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID", ge=0, le=2**63 - 1, description="Resume after this event id (seq)."
    ),
]
#: Turns one change into frames, and says whether the stream ends after them.
Render = Callable[[Change], tuple[list[str], bool]]


def _feed(request: Request) -> ChangeFeed:
    feed: ChangeFeed = request.app.state.feed
    return feed


@router.get(
    "/api/workflows/instances/{instance_id}/events",
    response_class=EventStream,
    status_code=status.HTTP_200_OK,
    responses={
        **EVENT_STREAM_RESPONSE,
        204: {"description": "Resumed after the instance ended: nothing more will come"},
        404: {"description": "Instance not found"},
    },
)
async def instance_events(
    instance_id: str,
    request: Request,
    store: StoreDep,
    tenant: ViewWorkflows,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
) -> Response:
    """The compatible per-instance stream: `event: state` with the instance first, then
    one `event: state` per real change; when the instance ends, its last `state` is
    followed by `event: end` (or `event: deleted`) and the stream closes. A client that
    reconnects after that gets 204, which tells EventSource to stop reconnecting."""
    if last_event_id is None:
        if await store.get_instance(tenant, instance_id) is None:
            raise not_found("Instance")
    elif not await store.changes_after(
        last_event_id, tenant_id=tenant, entity=EntityKind.INSTANCE, entity_id=instance_id, limit=1
    ):
        instance = await store.get_instance(tenant, instance_id)
        if instance is None or instance.has_ended:
            return Response(status_code=status.HTTP_204_NO_CONTENT)
    change_filter = ChangeFilter(tenant, entity=EntityKind.INSTANCE, entity_id=instance_id)
    return EventStream(
        _instance_frames(
            _feed(request),
            store,
            change_filter,
            last_event_id,
            settings.sse_heartbeat_seconds,
        )
    )


@router.get(
    "/api/events",
    response_class=EventStream,
    status_code=status.HTTP_200_OK,
    responses=EVENT_STREAM_RESPONSE,
)
async def all_events(
    request: Request,
    store: StoreDep,
    tenant: ViewWorkflows,
    settings: SettingsDep,
    entity: Annotated[Literal["instance", "definition"] | None, Query()] = None,
    definition_id: Annotated[str | None, Query(alias="definitionId")] = None,
    status_filter: Annotated[
        str | None, Query(alias="status", description="Running and/or Finished.")
    ] = None,
    sub_status: Annotated[
        str | None, Query(alias="subStatus", description="Comma-separated sub-statuses.")
    ] = None,
    last_event_id: LastEventId = None,
) -> EventStream:
    """Every change of the tenant, for dashboards: `event: instance` or `event:
    definition`, the change (`op`, `seq`, …) with the entity's state in `data`. A client
    resuming from before the oldest change still kept gets `event: reset` first: reload."""
    sub_statuses = sub_status_filter(status_filter, sub_status)
    change_filter = ChangeFilter(
        tenant,
        entity=EntityKind(entity) if entity else None,
        definition_id=definition_id,
        sub_statuses=frozenset(sub_statuses) if sub_statuses is not None else None,
    )
    return EventStream(
        _change_frames(
            _feed(request), store, change_filter, last_event_id, settings.sse_heartbeat_seconds
        )
    )


async def _instance_frames(
    feed: ChangeFeed,
    store: Store,
    change_filter: ChangeFilter,
    last_event_id: int | None,
    heartbeat: float,
) -> AsyncIterator[str]:
    instance_id = change_filter.entity_id
    assert instance_id is not None
    with feed.subscribe(change_filter) as subscription:
        first = await store.first_seq()
        if last_event_id is None or (first is not None and last_event_id < first - 1):
            # A fresh stream, or one resumed from before what the log still holds:
            # start from the instance as it is now.
            head = await store.last_seq()
            instance = await store.get_instance(change_filter.tenant_id, instance_id)
            if instance is None:
                yield frame("deleted", {"id": instance_id}, head)
                return
            yield frame("state", instance.to_wire(), head)
            if instance.has_ended:
                yield frame("end", _ending(instance.id, instance.sub_status), head)
                return
            last_event_id = head
        async for text in _follow(
            subscription, store, change_filter, last_event_id, heartbeat, _instance_render
        ):
            yield text


async def _change_frames(
    feed: ChangeFeed,
    store: Store,
    change_filter: ChangeFilter,
    last_event_id: int | None,
    heartbeat: float,
) -> AsyncIterator[str]:
    with feed.subscribe(change_filter) as subscription:
        first = await store.first_seq()
        if last_event_id is None:
            last_event_id = await store.last_seq()
            yield ": connected\n\n"
        elif first is not None and last_event_id < first - 1:
            # Retention purged part of what the client missed: say so, send what is left.
            yield frame("reset", {"reason": "history purged", "firstSeq": first})
            last_event_id = first - 1
        async for text in _follow(
            subscription, store, change_filter, last_event_id, heartbeat, _change_render
        ):
            yield text


async def _follow(
    subscription: Subscription,
    store: Store,
    change_filter: ChangeFilter,
    last: int,
    heartbeat: float,
    render: Render,
) -> AsyncIterator[str]:
    """Backfill from the change log after `last`, then go live; each seq at most once."""
    while True:
        page = await store.changes_after(
            last,
            tenant_id=change_filter.tenant_id,
            entity=change_filter.entity,
            entity_id=change_filter.entity_id,
            limit=BACKFILL_PAGE,
        )
        for change in page:
            last = change.seq
            if change_filter.matches(change):
                frames, done = render(change)
                for text in frames:
                    yield text
                if done:
                    return
        if len(page) < BACKFILL_PAGE:
            break
    while True:
        batch = await subscription.next_batch(heartbeat)
        if subscription.ended is not None:
            yield retry_hint()
            return
        if not batch:
            yield HEARTBEAT
            continue
        for change in batch:
            if change.seq <= last:
                continue
            last = change.seq
            frames, done = render(change)
            for text in frames:
                yield text
            if done:
                return


def _instance_render(change: Change) -> tuple[list[str], bool]:
    if change.op is ChangeOp.DELETE:
        return [frame("deleted", change.data, change.seq)], True
    state = frame("state", change.data, change.seq)
    if change.sub_status in ENDED_SUB_STATUSES:
        return [state, frame("end", _ending(change.entity_id, change.sub_status), change.seq)], True
    return [state], False


def _change_render(change: Change) -> tuple[list[str], bool]:
    return [frame(change.entity.value, change.to_wire(), change.seq)], False


def _ending(instance_id: str, sub_status: SubStatus | None) -> dict[str, str | None]:
    return {"id": instance_id, "subStatus": sub_status.value if sub_status else None}
