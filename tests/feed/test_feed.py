"""The change feed itself: fan-out, bounded subscribers, catching up after a gap."""

from __future__ import annotations

import asyncio

from tamma_sync.feed import ChangeFeed, ChangeFilter, EndReason, MemoryBroker, Subscription
from tamma_sync.models import DEFAULT_TENANT_ID, Change, EntityKind, InstanceWrite
from tamma_sync.store import Store

T = DEFAULT_TENANT_ID


def _write(n: int) -> InstanceWrite:
    return InstanceWrite(id=f"i{n}", definition_id="wf", status="running")


async def _receive(subscription: Subscription, count: int, within: float = 5.0) -> list[Change]:
    """The first `count` changes the subscription is handed (fewer if `within` seconds
    pass first)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    received: list[Change] = []
    while len(received) < count and (left := deadline - loop.time()) > 0:
        received += await subscription.next_batch(left)
    return received


async def test_slow_subscriber_is_ended_without_holding_back_others(store: Store) -> None:
    feed = ChangeFeed(store, MemoryBroker(store), capacity=5, poll_interval=0.05)
    await feed.start()
    try:
        everything = ChangeFilter(T, entity=EntityKind.INSTANCE)
        with feed.subscribe(everything) as slow, feed.subscribe(everything) as reader:
            received: list[int] = []
            for n in range(12):
                await store.create_instance(T, _write(n))
                received += [change.seq for change in await reader.next_batch(1.0)]
            assert slow.ended is EndReason.OVERFLOW
            assert await slow.next_batch(0.01) == []
            assert len(received) == 12, "the reader got every change despite the slow one"
            assert received == sorted(received)
        assert feed.subscriber_count == 0
    finally:
        await feed.stop()


async def test_changes_from_another_writer_are_picked_up_by_polling(
    store: Store, database_url: str
) -> None:
    """A second process writing to the same database (no commit hook here) is seen anyway."""
    feed = ChangeFeed(store, MemoryBroker(store), poll_interval=0.05)
    await feed.start()
    other_writer = Store.from_url(database_url)
    try:
        with feed.subscribe(ChangeFilter(T)) as subscription:
            await other_writer.create_instance(T, _write(1))
            batch = await subscription.next_batch(2.0)
        assert [change.entity_id for change in batch] == ["i1"]
    finally:
        await other_writer.close()
        await feed.stop()


async def test_filters_by_tenant_and_definition(store: Store) -> None:
    feed = ChangeFeed(store, MemoryBroker(store), poll_interval=0.05)
    await feed.start()
    try:
        with (
            feed.subscribe(ChangeFilter(T, definition_id="wf")) as mine,
            feed.subscribe(ChangeFilter("other-tenant")) as theirs,
            feed.subscribe(ChangeFilter(T)) as everything,
        ):
            await store.create_instance(T, _write(1))
            await store.create_instance(T, InstanceWrite(id="x", definition_id="else"))
            # Each change is offered to every subscription at once: once the unfiltered
            # one holds both, the others have been offered both too.
            assert [c.entity_id for c in await _receive(everything, 2)] == ["i1", "x"]
            assert [c.entity_id for c in await mine.next_batch(0)] == ["i1"]
            assert await theirs.next_batch(0) == []
    finally:
        await feed.stop()
