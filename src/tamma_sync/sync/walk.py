"""The instance walk's pages on their way to the mirror: made into rows ahead of their
write, and written together while the database is busy with the write before (group
commit).

A write transaction costs a database more per row the fewer rows it holds. SQLite above
all: a walk's rows land at random places in two indexes (the instances' ids and the
change log's entity ids), so a transaction rewrites about one page of each per row it
holds, until it holds about as many rows as those indexes have pages, and the
WAL checkpoint after it copies every page it rewrote. So pages made ready while a write
runs wait for it and then go to the database as one batch; while the database keeps up,
each page is written on its own as soon as it is ready, as before.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final

from tamma_sync.elsa import ElsaTimestamp, InstanceSummary
from tamma_sync.models import MAX_BATCH_DELETIONS, SourceState, SyncBatch
from tamma_sync.store import NewRows
from tamma_sync.sync.sink import Sink
from tamma_sync.sync.writer import Staged

#: Rows made ahead of their write between two lets-go of the event loop.
NEW_ROWS_SLICE: Final = 100


async def made_ahead(sink: Sink, batch: SyncBatch) -> NewRows | None:
    """The batch's rows made ahead of its write (`Sink.new_rows`), in slices with the
    event loop let go in between: the write before, waiting on the database, goes on as
    soon as the database answers it."""
    made: NewRows | None = None
    for start in range(0, len(batch.instances), NEW_ROWS_SLICE):
        part = sink.new_rows(batch.source_id, batch.instances[start : start + NEW_ROWS_SLICE])
        if part is None:
            return None
        if made is None:
            made = part
        else:
            made.extend(part)
        await asyncio.sleep(0)
    return made


@dataclass
class PageGroup:
    """Pages of a walk ready to write as one batch, with the cursor that covers them."""

    staged: Staged
    made: NewRows | None
    """What the sink made of the rows ahead of their write, if it did for every page."""
    rows: list[InstanceSummary]
    cursor: ElsaTimestamp | None
    """The newest cursor of the pages: safe to store once every page's rows are."""
    limit: int
    """Most instances the batch may hold once pages join it (`Sink.joined_instances`)."""
    _ids: set[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._ids = {row.id for row in self.rows}

    def can_take(self, page: PageGroup) -> bool:
        """Whether `page` may join: the batch stays within its limit and what one sync
        batch may carry, and no instance is in both. An instance listed again, updated
        since, goes in a batch after the one that holds it: in one batch, the rows made
        ahead would insert it twice, and the whole batch would be written again the slow
        way."""
        batch, more = self.staged.batch, page.staged.batch
        return (
            len(batch.instances) + len(more.instances) <= self.limit
            and len(batch.deleted_instance_ids) + len(more.deleted_instance_ids)
            <= MAX_BATCH_DELETIONS
            and self._ids.isdisjoint(page._ids)
        )

    def take(self, page: PageGroup) -> None:
        """Add the pages of `page`, read after these."""
        self.staged = self.staged.joined(page.staged)
        if self.made is not None and page.made is not None:
            self.made.extend(page.made)
        else:
            self.made = None
        self.rows += page.rows
        if page.cursor is not None and (self.cursor is None or page.cursor > self.cursor):
            self.cursor = page.cursor
        self._ids |= page._ids

    @property
    def full(self) -> bool:
        """Whether the batch is as large as it may be: it is written next."""
        return len(self.staged.batch.instances) >= self.limit


@dataclass(frozen=True)
class PageWrite:
    """A batch of the walk being written, with the state that covers it and its rows."""

    task: asyncio.Task[None]
    state: SourceState
    rows: list[InstanceSummary]
