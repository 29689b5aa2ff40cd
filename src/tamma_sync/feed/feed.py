"""The change feed: one reader of the change log per process, fanned out to subscribers.

When the broker says the log grew (or at the latest every poll interval), the feed reads
the new rows once and offers each to every subscription whose filter matches. A
subscription holds at most `capacity` changes: one that falls behind is ended instead of
slowing anyone else, and its client resumes from its last event id, reading what it
missed from the change log. Subscribe first, then backfill, then go live, dropping
duplicates by seq: nothing is lost between the backfill and the live part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from tamma_sync.feed.broker import Broker
from tamma_sync.models import Change, EntityKind, SubStatus
from tamma_sync.store import Store, describe_database_error

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1_000
READ_BATCH = 500


@dataclass(frozen=True)
class ChangeFilter:
    """Which changes a subscriber wants; None matches anything."""

    tenant_id: str
    entity: EntityKind | None = None
    entity_id: str | None = None
    definition_id: str | None = None
    sub_statuses: frozenset[SubStatus] | None = None

    def matches(self, change: Change) -> bool:
        return (
            change.tenant_id == self.tenant_id
            and (self.entity is None or change.entity is self.entity)
            and (self.entity_id is None or change.entity_id == self.entity_id)
            and (self.definition_id is None or change.definition_id == self.definition_id)
            and (self.sub_statuses is None or change.sub_status in self.sub_statuses)
        )


class EndReason(StrEnum):
    OVERFLOW = "overflow"
    """The subscriber fell behind; it resumes from its last event id."""
    SHUTDOWN = "shutdown"
    REVOKED = "revoked"
    """The subscriber's access was withdrawn; it must not resume with it."""


class Subscription:
    """A bounded buffer of matching changes for one subscriber."""

    def __init__(self, change_filter: ChangeFilter, capacity: int) -> None:
        self.filter = change_filter
        self._capacity = capacity
        self._pending: deque[Change] = deque()
        self._ready = asyncio.Event()
        self.ended: EndReason | None = None

    def offer(self, change: Change) -> None:
        if self.ended is not None:
            return
        if len(self._pending) >= self._capacity:
            self.end(EndReason.OVERFLOW)
            return
        self._pending.append(change)
        self._ready.set()

    def end(self, reason: EndReason) -> None:
        self.ended = reason
        self._pending.clear()
        self._ready.set()

    async def next_batch(self, within: float) -> list[Change]:
        """The changes buffered so far, waiting up to `within` seconds for the first."""
        if not self._pending and self.ended is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), within)
        batch = list(self._pending)
        self._pending.clear()
        self._ready.clear()
        return batch


class ChangeFeed:
    """Reads the change log as the broker signals, and fans changes out to subscriptions."""

    def __init__(
        self,
        store: Store,
        broker: Broker,
        *,
        capacity: int = DEFAULT_CAPACITY,
        poll_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._broker = broker
        self._capacity = capacity
        self._poll_interval = poll_interval
        self._subscriptions: set[Subscription] = set()
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.head = 0
        """The newest seq handed to subscriptions."""
        self.newest_known = 0
        """The newest seq a broker told of."""

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def lag(self) -> int:
        """Changes known to be committed but not yet handed to subscriptions."""
        return max(0, self.newest_known - self.head)

    async def start(self) -> None:
        self.head = await self._store.last_seq()
        await self._broker.start(self._wake)
        self._task = asyncio.create_task(self._run(), name="change-feed")

    async def stop(self) -> None:
        self.end_streams()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._broker.stop()

    def end_streams(self) -> None:
        """End every subscription (server shutdown): clients resume elsewhere or later."""
        for subscription in list(self._subscriptions):
            subscription.end(EndReason.SHUTDOWN)

    @contextlib.contextmanager
    def subscribe(self, change_filter: ChangeFilter) -> Iterator[Subscription]:
        subscription = Subscription(change_filter, self._capacity)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def _wake(self, seq: int | None) -> None:
        if seq is not None:
            self.newest_known = max(self.newest_known, seq)
        if seq is None or seq > self.head:
            self._wanted.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), self._poll_interval)
            self._wanted.clear()
            if not self._subscriptions and self.newest_known > self.head:
                # No one to hand them to: past the changes a broker told of, unread (a
                # stream that starts later reads what it missed from the log itself).
                self.head = self.newest_known
                continue
            try:
                await self._catch_up()
            except Exception as exc:  # the database is away: try again at the next wake
                log.warning(
                    "change feed: cannot read the change log: %s", describe_database_error(exc)
                )

    async def _catch_up(self) -> None:
        while True:
            batch = await self._store.changes_after(self.head, limit=READ_BATCH)
            for change in batch:
                for subscription in self._subscriptions:
                    if subscription.filter.matches(change):
                        subscription.offer(change)
            if batch:
                self.head = batch[-1].seq
            if len(batch) < READ_BATCH:
                return
