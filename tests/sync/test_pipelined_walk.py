"""The instance walk writes a page while it reads and makes ready the next one: the writes
still go one at a time and in order, and a write that fails stops the walk where the
mirror's cursor says, with nothing after it written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import sqlalchemy as sa

from tamma_sync.elsa import ElsaClient
from tamma_sync.models import DEFAULT_TENANT_ID, ChangeOp, EntityKind, InstanceWrite, SyncBatch
from tamma_sync.settings import SourceSettings
from tamma_sync.simulator import ElsaSimulator
from tamma_sync.store import NewRows, Store, WriteResult
from tamma_sync.sync import StoreSink, SyncOptions, SyncService
from tests.support.mirror import assert_mirror_equals
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
            return await super().apply(batch, made, sent)
        finally:
            self.under_way -= 1


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
    # Two pages' rows (a page's rows seen on the page before are not written twice).
    assert PAGE_SIZE < stored <= 2 * PAGE_SIZE, "nothing after the failed page"
    assert state.counters.instances_written == stored, "the saved state is the stored pages'"

    sink.fail_at = None
    report = await service.run_cycle()
    assert report.error is None
    assert sink.most_under_way == 1
    assert report.written.created == INSTANCES - stored, "resumed from the cursor"
    await assert_mirror_equals(store, simulator)
    creates = [
        change.entity_id
        for change in await store.changes_after(0, limit=10_000)
        if change.op is ChangeOp.CREATE and change.entity is EntityKind.INSTANCE
    ]
    assert len(creates) == len(set(creates)) == INSTANCES, "no instance was created twice"
