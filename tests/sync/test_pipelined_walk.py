"""The instance walk writes a page while it reads and makes ready the next one, and pages
made ready while a write runs go to the database together: the writes still go one at a
time and in order, an instance never twice in one, and a write that fails stops the walk
where the mirror's cursor says, with nothing after it written."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa

from tamma_sync.elsa import ElsaClient
from tamma_sync.models import DEFAULT_TENANT_ID, ChangeOp, EntityKind, InstanceWrite, SyncBatch
from tamma_sync.settings import SourceSettings
from tamma_sync.simulator import ElsaSimulator
from tamma_sync.store import NewRows, Store, WriteResult
from tamma_sync.sync import StoreSink, SyncOptions, SyncService
from tests.support.mirror import assert_mirror_equals, expected_state
from tests.sync.conftest import INSTANCES, PAGE_SIZE, Clock

T = DEFAULT_TENANT_ID


class WatchedSink(StoreSink):
    """The store's own sink, its writes watched: how many are under way at once, and
    whether the next page is made ready only once the write under way has sent its rows
    to the database (`Sink.apply`'s `sent`). Each write waits a moment first, time enough
    for the walk to make the next page ready if it did not wait; the write numbered
    `fail_at` fails as a lost database connection."""

    def __init__(self, store: Store, fail_at: int | None = None) -> None:
        super().__init__(store, T)
        self.fail_at = fail_at
        self.writes = 0
        self.under_way = 0
        self.most_under_way = 0
        self.made_ahead = 0
        self.made_before_sent = 0
        self.stored_ids: set[str] = set()
        self._sent: asyncio.Event | None = None

    def new_rows(self, source_id: str, writes: Sequence[InstanceWrite]) -> NewRows:
        made = super().new_rows(source_id, writes)
        assert made is not None
        self.made_ahead += sum(row is not None for row in made.rows)
        if self.under_way and self._sent is not None:
            self.made_before_sent += not self._sent.is_set()
        return made

    async def apply(
        self,
        batch: SyncBatch,
        made: NewRows | None = None,
        sent: asyncio.Event | None = None,
    ) -> WriteResult:
        self.writes += 1
        self._sent = sent
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        try:
            await asyncio.sleep(0.1)
            if self.writes == self.fail_at:
                raise sa.exc.OperationalError("COMMIT", {}, ConnectionResetError("lost"))
            result = await super().apply(batch, made, sent)
            self.stored_ids.update(write.id for write in batch.instances)
            return result
        finally:
            self.under_way -= 1


async def assert_each_instance_created_once(store: Store) -> None:
    creates = [
        change.entity_id
        for change in await store.changes_after(0, limit=10_000)
        if change.op is ChangeOp.CREATE and change.entity is EntityKind.INSTANCE
    ]
    assert len(creates) == len(set(creates)) == INSTANCES, "no instance was created twice"


async def test_a_failed_page_write_stops_the_walk_at_the_page_before(
    source: SourceSettings,
    elsa_client: ElsaClient,
    store: Store,
    options: SyncOptions,
    simulator: ElsaSimulator,
) -> None:
    # Write 1 holds the definitions; writes 2 and 3 the first two pages of instances.
    sink = WatchedSink(store, fail_at=4)
    service = SyncService(source, elsa_client, sink, options, clock=Clock())
    report = await service.run_cycle()
    assert report.error is not None and "lost" in report.error
    assert sink.most_under_way == 1, "one write at a time"
    assert sink.made_ahead >= 3 * PAGE_SIZE, "the initial walk made its rows ahead"
    assert sink.made_before_sent == 0, "a page made ready only once the write before sent"
    state = await store.source_state(T, "elsa")
    assert state is not None and state.cursor is not None
    stored = (await store.source_counts(T))["elsa"]["instances"]
    # Writes 2 and 3: two pages or more (pages made ready while a write runs join the next).
    assert stored == len(sink.stored_ids) > PAGE_SIZE, "nothing after the failed write"
    assert state.counters.instances_written == stored, "the saved state is the stored pages'"

    sink.fail_at = None
    report = await service.run_cycle()
    assert report.error is None
    assert sink.most_under_way == 1
    assert report.written.created == INSTANCES - stored, "resumed from the cursor"
    await assert_mirror_equals(store, simulator)
    await assert_each_instance_created_once(store)


class SlowDatabaseSink(StoreSink):
    """The store's own sink on a database that takes `delay` seconds more to answer each
    write: the walk makes pages ready meanwhile. The instance ids of each batch are kept;
    the write numbered `fail_at` fails as a lost database connection, before it writes
    anything."""

    def __init__(
        self,
        store: Store,
        fail_at: int | None = None,
        on_write: Callable[[int], Awaitable[None]] | None = None,
        delay: float = 0.1,
    ) -> None:
        super().__init__(store, T)
        self.fail_at = fail_at
        self.on_write = on_write
        self.delay = delay
        self.writes = 0
        self.batches: list[list[str]] = []

    async def apply(
        self,
        batch: SyncBatch,
        made: NewRows | None = None,
        sent: asyncio.Event | None = None,
    ) -> WriteResult:
        self.writes += 1
        if self.writes == self.fail_at:
            raise sa.exc.OperationalError("COMMIT", {}, ConnectionResetError("lost"))
        result = await super().apply(batch, made, sent)
        self.batches.append([write.id for write in batch.instances])
        if self.on_write is not None:
            await self.on_write(self.writes)
        await asyncio.sleep(self.delay)
        return result


async def test_pages_made_ready_while_the_database_is_busy_are_written_as_one_batch(
    source: SourceSettings,
    elsa_client: ElsaClient,
    store: Store,
    options: SyncOptions,
    simulator: ElsaSimulator,
) -> None:
    # Write 1 holds the definitions, write 2 the first page; the pages read while write 2
    # runs go in write 3, which fails: the stored state covers what write 2 stored. Each
    # write takes half a second more: on a slow, loaded host reading a page with its
    # details took longer than 0.1 s, and no two pages were ready together.
    sink = SlowDatabaseSink(store, fail_at=3, delay=0.5)
    service = SyncService(source, elsa_client, sink, options, clock=Clock())
    report = await service.run_cycle()
    assert report.error is not None and "lost" in report.error
    state = await store.source_state(T, "elsa")
    assert state is not None and state.cursor is not None
    stored = (await store.source_counts(T))["elsa"]["instances"]
    assert stored == len(sink.batches[1]) == PAGE_SIZE, "the first page, and nothing after"
    assert state.counters.instances_written == stored, "the saved state is the stored pages'"

    sink.fail_at = None
    report = await service.run_cycle()
    assert report.error is None
    walked = [ids for ids in sink.batches[2:] if ids]
    assert len(walked) < (INSTANCES - stored) / PAGE_SIZE, "pages were written together"
    # Two pages or more in one batch: more ids than one page holds (not always two pages'
    # worth: on a loaded host two joined pages held 48 ids).
    assert max(len(ids) for ids in walked) > PAGE_SIZE
    await assert_mirror_equals(store, simulator)
    await assert_each_instance_created_once(store)


async def test_an_instance_listed_again_during_the_walk_is_written_in_a_later_batch(
    source: SourceSettings,
    elsa_client: ElsaClient,
    store: Store,
    options: SyncOptions,
    simulator: ElsaSimulator,
) -> None:
    # While the first page is written, every instance moves on: those of the pages read
    # ahead are listed again, updated, at the walk's end, and the write takes long enough
    # for the whole walk to be made ready meanwhile.
    _, instances = expected_state(simulator)
    moved: list[str] = []

    async def move_on(write: int) -> None:
        if write == 2:
            moved.extend(simulator.progress_instances(instances))
            await asyncio.sleep(1.0)

    sink = SlowDatabaseSink(store, on_write=move_on)
    service = SyncService(source, elsa_client, sink, options, clock=Clock())
    report = await service.run_cycle()
    assert report.error is None
    assert moved, "some instances were running"
    assert all(len(ids) == len(set(ids)) for ids in sink.batches), "an instance once a batch"
    listed_twice = {i for i in moved if sum(ids.count(i) for ids in sink.batches) == 2}
    assert listed_twice, "the walk listed some moved instances twice"
    await assert_mirror_equals(store, simulator)
    await assert_each_instance_created_once(store)
