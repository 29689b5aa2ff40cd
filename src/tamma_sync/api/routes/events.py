"""Live streams (Server-Sent Events): one instance's changes, and every change.

Every frame carries `id: <seq>`, the change-log sequence number, so a client that
reconnects with `Last-Event-ID` gets exactly the changes it missed — on any replica. A
position the log cannot resume from (purged, or one it never reached) starts the client
again from now; a stream whose API key is revoked ends with `event: revoked`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from tamma_sync.api.auth import Access, Authenticator, access_for
from tamma_sync.api.deps import SettingsDep, StoreDep
from tamma_sync.api.errors import ApiError, not_found
from tamma_sync.api.filters import sub_status_filter
from tamma_sync.api.sse import (
    EVENT_STREAM_RESPONSE,
    HEARTBEAT,
    EventStream,
    frame,
    retry_hint,
)
from tamma_sync.feed import ChangeFeed, ChangeFilter, EndReason, Subscription
from tamma_sync.models import ENDED_SUB_STATUSES, Change, ChangeOp, EntityKind, Scope, SubStatus
from tamma_sync.settings import Settings
from tamma_sync.store import Store, describe_database_error, is_database_unavailable

router = APIRouter(tags=["events"])

log = logging.getLogger(__name__)

#: Change-log rows read per query while backfilling a resumed stream.
BACKFILL_PAGE = 500
#: Seconds between tries of a backfill page while the database cannot be reached.
BACKFILL_RETRY_SECONDS = 0.5

#: The largest event id: change-log seqs are 64-bit.
MAX_EVENT_ID = 2**63 - 1


async def _last_event_id(
    header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Resume after this event id (seq).",
            json_schema_extra={"pattern": "^[0-9]{0,19}$"},
        ),
    ] = None,
) -> int | None:
    """Only an id these streams send, else 400: a guessed position could skip changes.
    An empty one is none, as `EventSource` then sends no header at all."""
    if not header:
        return None
    digits = len(str(MAX_EVENT_ID))
    if header.isascii() and header.isdigit() and len(header) <= digits:
        seq = int(header)
        if seq <= MAX_EVENT_ID:
            return seq
    raise ApiError(
        400,
        f"Last-Event-ID: not an event id of these streams (expected a whole number from 0 to "
        f"{MAX_EVENT_ID})",
    )


LastEventId = Annotated[int | None, Depends(_last_event_id)]
#: The caller's access, which the stream keeps checking while it runs.
StreamAccess = Annotated[Access, Depends(access_for(Scope.WORKFLOWS_VIEW))]
#: Turns one change into frames, and says whether the stream ends after them.
Render = Callable[[Change], tuple[list[str], bool]]


@dataclass(frozen=True)
class _Stream:
    """One stream's context: where its changes come from, and whose access it runs on."""

    feed: ChangeFeed
    store: Store
    authenticator: Authenticator
    access: Access
    heartbeat: float

    @contextlib.contextmanager
    def subscribe(self, change_filter: ChangeFilter) -> Iterator[_Live]:
        """A feed subscription, ended (`REVOKED`) once the caller's key no longer grants
        the stream: a stream outlives the request whose key let it in."""
        with self.feed.subscribe(change_filter) as subscription:
            guard = asyncio.create_task(
                self.authenticator.watch(self.access), name="stream-access-guard"
            )

            def revoke(done: asyncio.Task[str]) -> None:
                if not done.cancelled():
                    subscription.end(EndReason.REVOKED)

            guard.add_done_callback(revoke)
            try:
                yield _Live(subscription, guard)
            finally:
                guard.cancel()


@dataclass(frozen=True)
class _Live:
    """A stream's subscription, and the guard that ends it when the key is revoked."""

    subscription: Subscription
    guard: asyncio.Task[str]
    """Returns, with why, once the caller's key is revoked."""

    def farewell(self) -> str:
        """The last frame of a stream the server ends: `revoked`, after which reconnecting
        with the same key gets 401; else a `retry:` hint, to reconnect and resume."""
        if self.subscription.ended is EndReason.REVOKED:
            return frame("revoked", {"error": self.guard.result(), "status": 401})
        return retry_hint()


def _stream(request: Request, store: Store, settings: Settings, access: Access) -> _Stream:
    state = request.app.state
    return _Stream(state.feed, store, state.authenticator, access, settings.sse_heartbeat_seconds)


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
    access: StreamAccess,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
) -> Response:
    """The compatible per-instance stream: `event: state` with the instance first, then
    one `event: state` per real change; when the instance ends, its last `state` is
    followed by `event: end` (or `event: deleted`) and the stream closes. A client that
    reconnects after that gets 204, which tells EventSource to stop reconnecting. One that
    resumes from a position the log never reached is served as a new client."""
    tenant = access.tenant_id
    if last_event_id is not None and last_event_id > await store.last_seq():
        last_event_id = None  # not a position of this log: nothing can be told from it
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
        _instance_frames(_stream(request, store, settings, access), change_filter, last_event_id)
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
    access: StreamAccess,
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
    resuming from a position the log cannot resume from — before the oldest change still
    kept, or beyond the newest — gets `event: reset` first: reload."""
    sub_statuses = sub_status_filter(status_filter, sub_status)
    change_filter = ChangeFilter(
        access.tenant_id,
        entity=EntityKind(entity) if entity else None,
        definition_id=definition_id,
        sub_statuses=frozenset(sub_statuses) if sub_statuses is not None else None,
    )
    return EventStream(
        _change_frames(_stream(request, store, settings, access), change_filter, last_event_id)
    )


async def _instance_frames(
    stream: _Stream, change_filter: ChangeFilter, last_event_id: int | None
) -> AsyncIterator[str]:
    instance_id = change_filter.entity_id
    assert instance_id is not None
    store = stream.store
    with stream.subscribe(change_filter) as live:
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
        async for text in _follow(stream, live, last_event_id, _instance_render):
            yield text


async def _change_frames(
    stream: _Stream, change_filter: ChangeFilter, last_event_id: int | None
) -> AsyncIterator[str]:
    store = stream.store
    with stream.subscribe(change_filter) as live:
        if last_event_id is None:
            last_event_id = await store.last_seq()
            yield ": connected\n\n"
        else:
            first, head = await store.first_seq(), await store.last_seq()
            # A position the log cannot resume from: say so, with where the stream goes on
            # from as the reset's id, so that a reconnect does not reset again.
            if last_event_id > head:
                # Beyond the newest change (say, a database restored or replaced): from now.
                last_event_id = head
                yield frame("reset", {"reason": "ahead of the log", "lastSeq": head}, head)
            elif first is not None and last_event_id < first - 1:
                # Retention purged part of what the client missed: send what is left.
                last_event_id = first - 1
                yield frame("reset", {"reason": "history purged", "firstSeq": first}, first - 1)
        async for text in _follow(stream, live, last_event_id, _change_render):
            yield text


async def _follow(stream: _Stream, live: _Live, last: int, render: Render) -> AsyncIterator[str]:
    """Backfill from the change log after `last`, then go live; each seq at most once."""
    subscription = live.subscription
    change_filter = subscription.filter
    while subscription.ended is not EndReason.REVOKED:
        page = await _backfill_page(stream.store, subscription, last)
        if page is None:
            break
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
    while subscription.ended is None:
        batch = await subscription.next_batch(stream.heartbeat)
        if subscription.ended is not None:
            break
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
    yield live.farewell()


async def _backfill_page(
    store: Store, subscription: Subscription, last: int
) -> list[Change] | None:
    """The changes after `last` that the subscription's filter may want, a page of them.
    While the database cannot be reached (restarting, say) the page is asked for again:
    the stream has nothing to deliver meanwhile, and what commits later waits in the
    subscription. None if the subscription ends first."""
    change_filter = subscription.filter
    while subscription.ended is None:
        try:
            return await store.changes_after(
                last,
                tenant_id=change_filter.tenant_id,
                entity=change_filter.entity,
                entity_id=change_filter.entity_id,
                limit=BACKFILL_PAGE,
            )
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            reason = describe_database_error(exc)
            log.warning("a stream's backfill cannot read the change log, retrying: %s", reason)
            await asyncio.sleep(BACKFILL_RETRY_SECONDS)
    return None


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
