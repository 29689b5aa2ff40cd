"""The sync of one ELSA source into a mirror (reference/elsa-3-api.md §6-§7, DESIGN.md).

Each cycle: the latest definitions (full models fetched only for new versions and for
drafts, which ELSA edits in place), then instances changed since the cursor (a keyset walk
on `updatedAt`; details fetched only for what changed), then — every reconcile interval —
a full id listing that tombstones what ELSA no longer has, but only when that listing was
complete and consistent. Each page is written with the cursor that covers it in one
atomic batch, so a worker killed at any point resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from tamma_sync.elsa import (
    ChangePage,
    ElsaClient,
    ElsaError,
    ElsaNotFound,
    ElsaTimestamp,
    InstanceSummary,
    definition_write,
    instance_write,
    sub_status,
)
from tamma_sync.metrics import Metrics
from tamma_sync.models import (
    ENDED_SUB_STATUSES,
    DefinitionWrite,
    InstanceWrite,
    SourceState,
    SyncBatch,
    SyncPhase,
    now_ms,
)
from tamma_sync.settings import DetailsPolicy, Settings, SourceSettings
from tamma_sync.store import Leadership, WriteResult
from tamma_sync.sync.sink import POSITIONS_PAGE, Sink

log = logging.getLogger(__name__)

#: Deleted ids per batch written during reconciliation.
DELETE_CHUNK = 1_000
#: How many fetched pages may wait to be written: lets ELSA reads overlap store writes.
PREFETCH_PAGES = 2


@dataclass(frozen=True)
class SyncOptions:
    page_size: int = 1_000
    details: DetailsPolicy = DetailsPolicy.ACTIVE
    details_concurrency: int = 8
    reconcile_interval: float = 300.0
    max_backoff: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncOptions:
        return cls(
            page_size=settings.sync_page_size,
            details=settings.sync_details,
            details_concurrency=settings.sync_details_concurrency,
            reconcile_interval=settings.reconcile_interval,
        )


@dataclass
class CycleReport:
    """What one cycle did."""

    written: WriteResult = field(default_factory=WriteResult)
    details_fetched: int = 0
    rejected: int = 0
    reconciled: bool = False
    error: str | None = None


ProgressCallback = Callable[[int], None]
_W = TypeVar("_W", InstanceWrite, DefinitionWrite)


class SyncService:
    """Keeps one ELSA source mirrored: `run()` loops until `stop()`; `trigger()` starts a
    cycle at once."""

    def __init__(
        self,
        source: SourceSettings,
        client: ElsaClient,
        sink: Sink,
        options: SyncOptions | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.source = source
        self._metrics = metrics
        self._client = client
        self._sink = sink
        self._options = options or SyncOptions()
        self._state = SourceState(source_id=source.id)
        self._state_loaded = False
        self._leadership: Leadership | None = None
        self._last_reconcile = 0.0
        self._failures = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._details_slots = asyncio.Semaphore(self._options.details_concurrency)
        self.on_progress: ProgressCallback | None = None

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def leading(self) -> bool:
        """Whether this process holds the source's sync leadership."""
        return self._leadership is not None

    def trigger(self) -> None:
        """Start the next cycle now instead of after the poll interval."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the page being written, then leave `run()`."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Cycle until stopped: poll interval between cycles, backoff after failures."""
        try:
            while not self._stopping:
                if await self._leading():
                    await self.run_cycle()
                    delay = self._next_delay()
                else:
                    delay = self.source.poll_interval * 5
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            if self._leadership is not None:
                await self._leadership.release()

    async def run_cycle(self) -> CycleReport:
        """One full cycle; failures are recorded in the source's state, never raised."""
        started = time.monotonic()
        report = CycleReport()
        try:
            await self._load_state()
            self._state.phase = SyncPhase.SYNCING
            if self._state.elsa_version is None:
                self._state.elsa_version = await self._client.package_version()
            initial = self._state.cursor is None
            await self._sync_definitions(report)
            await self._sync_instances(report)
            if initial and not self._stopping:
                # The mirror holds only what this complete walk just wrote: nothing in it
                # can be missing from ELSA yet, so the first listing can wait its turn.
                self._last_reconcile = time.monotonic()
            elif time.monotonic() - self._last_reconcile >= self._options.reconcile_interval:
                await self._reconcile(report)
        except Exception as exc:  # recorded in the state, retried with backoff
            report.error = _describe(exc)
            self._failures += 1
            self._state.phase = SyncPhase.ERROR
            self._state.last_error = report.error
            self._state.last_error_at = now_ms()
            self._state.counters.failed_cycles += 1
            log.warning(
                "sync of %s failed: %s",
                self.source.id,
                report.error,
                exc_info=not isinstance(exc, ElsaError),
            )
            self._state_loaded = False  # what was stored is the truth to resume from
        else:
            self._failures = 0
            self._state.phase = SyncPhase.IDLE
            self._state.last_success_at = now_ms()
        self._state.counters.cycles += 1
        elapsed = time.monotonic() - started
        self._state.last_cycle_ms = round(elapsed * 1000)
        await self._save_state()
        self._observe(report, elapsed)
        return report

    def _observe(self, report: CycleReport, elapsed: float) -> None:
        if self._metrics is None:
            return
        source = self.source.id
        self._metrics.sync_cycles.labels(source, "error" if report.error else "ok").inc()
        self._metrics.sync_cycle_seconds.labels(source).observe(elapsed)
        written = report.written
        for outcome, count in (
            ("created", written.created),
            ("updated", written.updated),
            ("unchanged", written.unchanged),
            ("deleted", written.deleted),
            ("rejected", report.rejected),
        ):
            self._metrics.sync_items.labels(source, outcome).inc(count)

    # -- cycle steps ---------------------------------------------------------------------

    async def _load_state(self) -> None:
        if self._state_loaded:
            return
        stored = await self._sink.load_state(self.source.id)
        if stored is not None:
            self._state = stored
        self._state.url = _without_credentials(self.source.url)
        self._state.poll_interval_seconds = self.source.poll_interval
        self._state_loaded = True

    async def _sync_definitions(self, report: CycleReport) -> None:
        listing = await self._client.list_latest_definitions()
        known = {d.id: d for d in await self._sink.definitions(self.source.id)}
        stale = [
            summary.id
            for summary in listing.items
            if (mirrored := known.get(summary.definition_id)) is None
            or mirrored.version_id != summary.id
            or not summary.is_published
            or mirrored.activities is None
        ]
        full = {model.id: model for model in await self._client.get_definitions(stale)}
        writes: list[DefinitionWrite] = []
        for summary in listing.items:
            model = full.get(summary.id, summary)
            self._keep(
                report, writes, summary.definition_id, functools.partial(definition_write, model)
            )
        gone: list[str] = []
        if listing.complete:
            listed = {summary.definition_id for summary in listing.items}
            gone = [definition_id for definition_id in known if definition_id not in listed]
        else:
            log.warning("definitions of %s: listing incomplete, nothing deleted", self.source.id)
        if writes or gone:
            written = await self._sink.apply(
                SyncBatch(source_id=self.source.id, definitions=writes, deleted_definition_ids=gone)
            )
            self._record(report, written)
            self._state.counters.definitions_written += written.created + written.updated

    async def _sync_instances(self, report: CycleReport) -> None:
        since = ElsaTimestamp.parse(self._state.cursor) if self._state.cursor else None
        already = set(self._state.cursor_ids)
        cursor, at_cursor = since, set(already)
        async for page in self._prefetched(self._client.iter_instance_changes(since)):
            # Rows stamped exactly at the saved cursor were taken by an earlier cycle.
            rows = [
                row
                for row in page.items
                if not (since is not None and row.updated_at == since and row.id in already)
            ]
            writes, gone = await self._with_details(rows, report)
            # The cursor moves only once the page it covers is stored.
            advanced = self._state.model_copy(deep=True)
            if page.cursor is not None:
                if page.cursor != cursor:
                    cursor, at_cursor = page.cursor, set()
                at_cursor.update(row.id for row in page.items if row.updated_at == cursor)
                advanced.cursor = page.cursor.to_iso()
                advanced.cursor_ids = sorted(at_cursor)
            written = await self._sink.apply(
                SyncBatch(
                    source_id=self.source.id,
                    instances=writes,
                    deleted_instance_ids=gone,
                    state=advanced,
                )
            )
            self._state = advanced
            self._record(report, written)
            self._state.counters.instances_written += written.created + written.updated
            self._state.counters.instances_unchanged += written.unchanged
            if self.on_progress is not None:
                self.on_progress(len(rows))
            if self._stopping:
                return

    async def _reconcile(self, report: CycleReport) -> None:
        """Tombstone what ELSA no longer has — only after a complete, consistent listing,
        and never an instance updated after the cursor (it may postdate the listing)."""
        cutoff = ElsaTimestamp.parse(self._state.cursor).epoch_ms if self._state.cursor else 0
        listing = await self._client.list_instance_ids()
        if not listing.complete:
            log.warning(
                "reconciliation of %s skipped, listing incomplete: %s",
                self.source.id,
                "; ".join(listing.problems),
            )
            return
        in_elsa = set(listing.items)
        gone: list[str] = []
        after: str | None = None
        while page := await self._sink.instance_positions(self.source.id, after, POSITIONS_PAGE):
            gone += [row_id for row_id, at in page if row_id not in in_elsa and at < cutoff]
            after = page[-1][0]
        for start in range(0, len(gone), DELETE_CHUNK):
            chunk = gone[start : start + DELETE_CHUNK]
            written = await self._sink.apply(
                SyncBatch(source_id=self.source.id, deleted_instance_ids=chunk)
            )
            self._record(report, written)
        self._last_reconcile = time.monotonic()
        self._state.reconciled_at = now_ms()
        report.reconciled = True

    # -- helpers -------------------------------------------------------------------------

    async def _with_details(
        self, rows: list[InstanceSummary], report: CycleReport
    ) -> tuple[list[InstanceWrite], list[str]]:
        """Write models for changed rows, with details where the policy wants them; rows
        ELSA deleted meanwhile (404 on details) come back as ids to delete."""
        writes: list[InstanceWrite] = []
        gone: list[str] = []
        detailed: list[InstanceSummary] = []
        for row in rows:
            if self._wants_details(row):
                detailed.append(row)
            else:
                self._keep(report, writes, row.id, functools.partial(instance_write, row))

        async def one(row: InstanceSummary) -> None:
            async with self._details_slots:
                try:
                    detail = await self._client.get_instance(row.id)
                    variables = await self._client.get_instance_variables(row.id, detail=detail)
                except ElsaNotFound:
                    gone.append(row.id)
                    return
            report.details_fetched += 1
            self._state.counters.details_fetched += 1
            self._keep(report, writes, row.id, lambda: instance_write(detail, variables=variables))

        await asyncio.gather(*(one(row) for row in detailed))
        return writes, gone

    def _keep(
        self, report: CycleReport, kept: list[_W], what: str, build: Callable[[], _W]
    ) -> None:
        """Map one ELSA row; a row our models refuse (an id of 300 characters, say) is
        logged and counted, and does not hold back the rest of the sync."""
        try:
            kept.append(build())
        except ValidationError as exc:
            self._state.counters.rejected += 1
            report.rejected += 1
            log.warning("sync of %s: %s rejected: %s", self.source.id, what, exc)

    def _wants_details(self, row: InstanceSummary) -> bool:
        policy = self._options.details
        if policy is DetailsPolicy.ALL:
            return True
        if policy is DetailsPolicy.NONE:
            return False
        # From the row's own text: a row our models refuse is refused by `_keep`, not here.
        return sub_status(row.sub_status) not in ENDED_SUB_STATUSES

    async def _prefetched(self, pages: AsyncGenerator[ChangePage]) -> AsyncIterator[ChangePage]:
        """Read the next pages from ELSA while the current one is being written."""
        queue: asyncio.Queue[ChangePage | Exception | None] = asyncio.Queue(PREFETCH_PAGES)

        async def produce() -> None:
            try:
                async with contextlib.aclosing(pages) as stream:
                    async for page in stream:
                        await queue.put(page)
            except Exception as exc:  # handed to the consumer, who raises it
                await queue.put(exc)
            else:
                await queue.put(None)

        producer = asyncio.create_task(produce())
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def _leading(self) -> bool:
        if self._leadership is not None and not await self._leadership.still_held():
            log.warning("sync of %s: lost leadership", self.source.id)
            self._leadership = None
        if self._leadership is None:
            try:
                self._leadership = await self._sink.lead(self.source.id)
            except Exception as exc:  # the database may be down: retry later
                log.warning("sync of %s: cannot take leadership: %s", self.source.id, exc)
                return False
            if self._leadership is None:
                log.debug("sync of %s: another process leads", self.source.id)
                return False
            self._state_loaded = False  # the previous leader may have moved the cursor
        return True

    async def _save_state(self) -> None:
        try:
            await self._sink.apply(SyncBatch(source_id=self.source.id, state=self._state))
        except Exception as exc:  # the mirror itself is unreachable
            log.warning("sync of %s: cannot save state: %s", self.source.id, exc)

    def _next_delay(self) -> float:
        interval = self.source.poll_interval
        if self._failures == 0:
            return interval
        backoff = min(self._options.max_backoff, interval * 2.0**self._failures)
        return backoff * random.uniform(0.5, 1.0)

    def _record(self, report: CycleReport, written: WriteResult) -> None:
        report.written.add(written)
        self._state.counters.deleted += written.deleted


def _without_credentials(url: str) -> str:
    """The URL as shown in status and logs: a `user:password@` part is dropped."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ElsaError) else f"{type(exc).__name__}: {text}"
