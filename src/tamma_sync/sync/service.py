"""The sync of one ELSA source into a mirror.

Each cycle:

1. the latest definitions (full models fetched only for new versions and for drafts,
   which ELSA edits in place);
2. the instance delta: instances updated since the cursor *minus the look-back window*,
   since ELSA stamps `updatedAt` before it commits and rows become visible out of order;
   rows already read at the same `updatedAt` are skipped before any detail request, and
   details are read only for rows that changed;
3. rejected rows whose retry has come;
4. the detail refresh: running instances' details read again on a steady budget, since
   ELSA commits new bookmarks and variables without moving `updatedAt`;
5. a slice of the deletion sweep (sync/sweep.py), within its share of ELSA's time.

Delta pages are written with the cursor that covers them in atomic batches (one page, or
the pages read while the write before ran: sync/walk.py), so a worker killed at any point
resumes where it stopped. A row the mirror refuses, or whose details ELSA keeps failing to
give, is set aside as a rejection and retried later (sync/writer.py): it never stops the
source.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from tamma_sync.elsa import (
    TICKS_PER_SECOND,
    ElsaClient,
    ElsaError,
    ElsaTimestamp,
    InstanceDetail,
    InstanceSummary,
    definition_write,
    epoch_ms,
    journal_entry,
    sub_status,
)
from tamma_sync.metrics import Metrics
from tamma_sync.models import (
    ENDED_SUB_STATUSES,
    DefinitionWrite,
    EntityKind,
    InstanceWrite,
    SourceState,
    SubStatus,
    SyncBatch,
    SyncPhase,
    clip_error,
    now_ms,
)
from tamma_sync.settings import DetailsPolicy, SourceSettings, without_credentials
from tamma_sync.store import (
    Leadership,
    NewRows,
    WriteResult,
    describe_database_error,
    is_database_error,
)
from tamma_sync.sync.details import DetailReader, Details
from tamma_sync.sync.observed import DetailAges, RecentRows
from tamma_sync.sync.options import CycleReport, SyncOptions, purged_by_retention
from tamma_sync.sync.prefetch import handed_over, prefetched
from tamma_sync.sync.sink import POSITIONS_PAGE, Sink
from tamma_sync.sync.sweep import Sweep, Window
from tamma_sync.sync.walk import PageGroup, PageWrite, made_ahead
from tamma_sync.sync.writer import Rejections, Staged, Writer, stage_writes

log = logging.getLogger(__name__)

#: How many fetched pages may wait to be written: lets ELSA reads overlap store writes.
PREFETCH_PAGES: Final = 2
#: Details read again per cycle at most, however far behind the refresh is.
REFRESH_LIMIT: Final = 2_000
#: How long a cancel waits for ELSA to finish cancelling before it answers.
CANCEL_WAIT_SECONDS: Final = 5.0


ProgressCallback = Callable[[int], None]


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._metrics = metrics
        self._client = client
        self._sink = sink
        self._options = options = options or SyncOptions()
        self._state = SourceState(source_id=source.id)
        self._state_loaded = False
        self._leadership: Leadership | None = None
        self._failures = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._details = DetailReader(client, options.details_concurrency)
        retry_base = max(10 * source.poll_interval, 1.0)
        self._rejections = Rejections(source.id, retry_base, clock)
        self._writer = Writer(sink, self._rejections)
        self._recent = RecentRows()
        self._ages = DetailAges(options.details_max_age, clock)
        self._ages_loaded = False
        self._sweep = Sweep(
            client,
            share=options.reconcile_share,
            burst=options.reconcile_share * max(2 * source.poll_interval, 1.0),
            min_interval=options.reconcile_interval,
            concurrency=options.details_concurrency,
            clock=clock,
        )
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
        """Finish the batch being written, then leave `run()`."""
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
        rejected_before = self._state.counters.rejected
        try:
            await self._load_state()
            rejected_before = self._state.counters.rejected
            self._state.phase = SyncPhase.SYNCING
            if self._state.elsa_version is None:
                self._state.elsa_version = await self._client.package_version()
            initial = self._state.cursor is None
            await self._sync_definitions(report)
            await self._sync_instances(report)
            if not self._stopping:
                await self._retry_rejections(report)
                await self._refresh_details(report)
                if initial:
                    # The mirror holds only what this complete walk just wrote: nothing in
                    # it can be missing from ELSA yet, so the first sweep can wait its turn.
                    self._sweep.postpone()
                else:
                    await self._sweep_slice(report)
        except Exception as exc:  # recorded in the state, retried with backoff
            report.error = _describe(exc)
            self._failures += 1
            self._state.phase = SyncPhase.ERROR
            self._state.last_error = report.error
            self._state.last_error_at = now_ms()
            self._state.counters.failed_cycles += 1
            # A traceback for the unexpected only: a database error's would carry SQL and rows.
            log.warning(
                "sync of %s failed: %s",
                self.source.id,
                report.error,
                exc_info=not isinstance(exc, ElsaError) and not is_database_error(exc),
            )
            self._state_loaded = False  # what was stored is the truth to resume from
            self._sweep.abandon()
        else:
            self._failures = 0
            self._state.phase = SyncPhase.IDLE
            self._state.last_success_at = now_ms()
        self._state.counters.cycles += 1
        elapsed = time.monotonic() - started
        self._state.last_cycle_ms = round(elapsed * 1000)
        await self._save_state()
        report.rejected = self._state.counters.rejected - rejected_before
        self._observe(report, elapsed)
        return report

    async def journal(
        self, instance_id: str, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A zero-based page of the instance's execution journal, oldest event first, and
        how many events it holds: read from ELSA now, never mirrored (it can be long, and
        only the page showing one instance needs it)."""
        found = await self._client.get_journal(instance_id, page, page_size)
        entries = [journal_entry(record) for record in found.items]
        return entries, found.total_count if found.total_count is not None else len(entries)

    async def cancel(self, instance_id: str, wait: float = CANCEL_WAIT_SECONDS) -> bool:
        """Cancel an instance in ELSA, wait (`wait` seconds at most) for ELSA to end it,
        and mirror what ELSA then holds. True if it has ended (or is gone); ElsaError if
        ELSA refused."""
        await self._client.cancel_instance(instance_id)
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            details = await self._details.read([instance_id])
            found = details.found.get(instance_id)
            ended = found is not None and sub_status(found[0].sub_status) in ENDED_SUB_STATUSES
            if found is None or ended or time.monotonic() >= deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        if details.failed:
            raise ElsaError(details.failed[instance_id], method="GET", path="/workflow-instances")
        await self._write_details(details, CycleReport())
        return found is None or ended

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
        self._state.url = without_credentials(self.source.url)
        self._state.studio_url = self.source.studio_url
        self._state.poll_interval_seconds = self.source.poll_interval
        self._rejections.load(self._state)
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
            self._rejections.keep(
                writes,
                summary.definition_id,
                functools.partial(definition_write, model),
                EntityKind.DEFINITION,
            )
        gone: list[str] = []
        if listing.complete:
            listed = {summary.definition_id for summary in listing.items}
            gone = [definition_id for definition_id in known if definition_id not in listed]
        else:
            log.warning("definitions of %s: listing incomplete, nothing deleted", self.source.id)
        if writes or gone:
            written = await self._writer.apply(
                SyncBatch(source_id=self.source.id, definitions=writes, deleted_definition_ids=gone)
            )
            self._record(report, written)
            self._state.counters.definitions_written += written.created + written.updated

    async def _sync_instances(self, report: CycleReport) -> None:
        """The delta: rows updated since the cursor minus the look-back, new ones only.

        Each page is written while the next is read and made ready (details read, rows
        mapped and, on the initial walk, made into the mirror's rows); pages made ready while
        a write runs join into one batch (sync/walk.py). Batches are written in order, each
        with the cursor that covers it, once the one before is stored."""
        cursor = ElsaTimestamp.parse(self._state.cursor) if self._state.cursor else None
        initial = cursor is None
        lookback = round(self._options.lookback * TICKS_PER_SECOND)
        since = cursor.shifted(-lookback) if cursor is not None else None
        changes = self._client.iter_instance_changes(since)
        writing: PageWrite | None = None
        group: PageGroup | None = None

        async def write(pages: PageGroup) -> bool:
            """Write `pages` once the one before is stored (then remembered); False if stopping."""
            nonlocal writing, cursor
            written = writing
            if written is not None:
                await self._stored(written)  # still `writing`: a cancelled walk waits for it
                writing = None
            stopping = self._stopping
            if not stopping:
                # The cursor moves only once the pages it covers are stored.
                advanced = self._state.model_copy(deep=True)
                if pages.cursor is not None and (cursor is None or pages.cursor > cursor):
                    cursor = pages.cursor
                    advanced.cursor = cursor.to_iso()
                sent = asyncio.Event()
                task = asyncio.create_task(
                    self._apply(pages.staged, report, state=advanced, made=pages.made, sent=sent)
                )
                writing = PageWrite(task, advanced, pages.rows)
                await handed_over(task, sent)
            if written is not None:
                self._remember(written, lookback)
            return not stopping

        try:
            # Closed on the way out, not when collected: the read-ahead ends with the cycle.
            async with contextlib.aclosing(prefetched(changes, PREFETCH_PAGES)) as pages:
                async for page in pages:
                    rows = [row for row in page.items if not self._recent.is_known(row)]
                    staged = await self._staged(rows)
                    made = await made_ahead(self._sink, staged.batch) if initial else None
                    ready = PageGroup(staged, made, rows, page.cursor, self._sink.joined_instances)
                    if group is not None and not group.can_take(ready):
                        if not await write(group):
                            return
                        group = None
                    if group is None:
                        group = ready
                    else:
                        group.take(ready)
                    # While the write before runs, the group waits for the pages after it.
                    if writing is None or writing.task.done() or group.full:
                        if not await write(group):
                            return
                        group = None
            if group is not None and not await write(group):
                return
            if writing is not None:
                await self._stored(writing)
                self._remember(writing, lookback)
        finally:
            if writing is not None:  # the walk failed or was cancelled: the write ends first
                await asyncio.gather(writing.task, return_exceptions=True)

    async def _stored(self, writing: PageWrite) -> None:
        """Wait for a batch's write (raising its error); then its state is the sync's."""
        await writing.task
        self._state = writing.state

    def _remember(self, writing: PageWrite, lookback: int) -> None:
        """Note the rows of a batch that was written (its state is the sync's already)."""
        self._recent.add(writing.rows)
        if writing.state.cursor is not None:
            self._recent.prune(ElsaTimestamp.parse(writing.state.cursor).shifted(-lookback))
        if self.on_progress is not None:
            self.on_progress(len(writing.rows))

    async def _retry_rejections(self, report: CycleReport) -> None:
        """Read rejected instances whose retry has come again, and write what ELSA holds."""
        due = self._rejections.due(EntityKind.INSTANCE)
        if due:
            await self._write_details(await self._details.read(due, once=True), report)

    async def _refresh_details(self, report: CycleReport) -> None:
        """Read running instances' details again, oldest first, at the steady rate."""
        if self._options.details is DetailsPolicy.NONE or self._options.details_max_age <= 0:
            return
        if not self._ages_loaded:
            await self._track_running()
        due = [i for i in self._ages.due(REFRESH_LIMIT) if not self._rejections.is_rejected(i)]
        if due:
            details = await self._details.read(due)
            report.refreshed += len(details.found)
            await self._write_details(details, report)

    async def _track_running(self) -> None:
        """Learn the running instances the mirror holds (once per leadership)."""
        after: str | None = None
        while page := await self._sink.instance_positions(
            self.source.id, active=True, after_id=after, limit=POSITIONS_PAGE
        ):
            self._ages.track(p.id for p in page if p.sub_status is not SubStatus.PENDING)
            after = page[-1].id
        self._ages_loaded = True

    async def _sweep_slice(self, report: CycleReport) -> None:
        """Go on with the deletion sweep while its budget allows."""
        sweep = self._sweep
        while not self._stopping and sweep.due():
            if not sweep.running:
                if self._state.cursor is None:
                    return
                sweep.begin(ElsaTimestamp.parse(self._state.cursor))
            window = await sweep.next_window()
            if window is None:
                continue
            await self._reconcile(window, report)
            if window.last:
                self._state.reconciled_at = now_ms()
                report.reconciled = True
                return

    async def _reconcile(self, window: Window, report: CycleReport) -> None:
        """Make the mirror's instances created in the window what ELSA holds: write the
        rows it lacks or holds older, delete those ELSA confirms gone."""
        mirrored: dict[str, tuple[int, SubStatus | None]] = {}
        after: str | None = None
        while page := await self._sink.instance_positions(
            self.source.id,
            created_from=window.start,
            created_before=window.end,
            after_id=after,
            limit=POSITIONS_PAGE,
        ):
            mirrored.update((p.id, (p.updated_at, p.sub_status)) for p in page)
            after = page[-1].id
        # Rejected rows are retried on their own schedule; purged ones are not mirrored again.
        now = now_ms()
        keep_ended_ms = self._sink.keep_ended_ms(self._options.keep_ended_ms)
        stale = [
            row
            for row_id, row in window.rows.items()
            if mirrored.get(row_id) != (epoch_ms(row.updated_at), sub_status(row.sub_status))
            and not self._rejections.is_rejected(row_id)
            and (row_id in mirrored or not purged_by_retention(row, now, keep_ended_ms))
        ]
        confirmation = await self._sweep.confirm([i for i in mirrored if i not in window.rows])
        rows = stale + list(confirmation.found)
        known = {detail.id: detail for detail in confirmation.found}
        await self._write_rows(rows, report, gone=confirmation.gone, known=known)
        self._recent.add(rows)

    # -- writing -------------------------------------------------------------------------

    async def _write_rows(
        self,
        rows: list[InstanceSummary],
        report: CycleReport,
        *,
        gone: Iterable[str] = (),
        known: Mapping[str, InstanceDetail] | None = None,
    ) -> None:
        """Write listed rows, with details where the policy wants them (`known`: details
        just read); rows whose details ELSA says are gone (404) are deleted, rows whose
        details fail go without them."""
        await self._apply(await self._staged(rows, gone, known), report)

    async def _staged(
        self,
        rows: list[InstanceSummary],
        gone: Iterable[str] = (),
        known: Mapping[str, InstanceDetail] | None = None,
    ) -> Staged:
        """Listed rows ready to write: with details where the policy wants them, the others
        without; deleted: `gone`, and the rows whose details ELSA says are gone."""
        wanted = [row.id for row in rows if self._wants_details(row)]
        details = await self._details.read(wanted, known) if wanted else Details()
        plain = [row for row in rows if row.id not in details.found and row.id not in details.gone]
        deleted = [*gone, *details.gone]
        return stage_writes(self.source.id, details, plain, deleted, self._rejections)

    async def _write_details(self, details: Details, report: CycleReport) -> None:
        """Write what ELSA answered for instances read by id: rows with their details,
        deletions of those gone; failed details are rejections."""
        staged = stage_writes(self.source.id, details, [], details.gone, self._rejections)
        await self._apply(staged, report)

    async def _apply(
        self,
        staged: Staged,
        report: CycleReport,
        *,
        state: SourceState | None = None,
        made: NewRows | None = None,
        sent: asyncio.Event | None = None,
    ) -> None:
        """Write a staged batch, with `state` when given (the walk's, which then takes the
        counts); failed details become rejections. `made`, `sent`: see `Sink.apply`."""
        batch, details = staged.batch, staged.details
        target = state if state is not None else self._state
        report.details_fetched += len(details.found)
        target.counters.details_fetched += len(details.found)
        if batch.instances or batch.deleted_instance_ids or state is not None:
            batch = batch.model_copy(update={"state": state})
            written = await self._writer.apply(batch, made, sent)
            self._record(report, written, target)
            target.counters.instances_written += written.created + written.updated
            target.counters.instances_unchanged += written.unchanged
            self._track(batch.instances, set(details.found), batch.deleted_instance_ids)
        # After the write, which clears rejections of the rows it wrote: these rows went
        # without their details and stay set aside until those can be read.
        for instance_id, reason in details.failed.items():
            self._rejections.add(instance_id, reason)

    def _track(self, writes: list[InstanceWrite], detailed: set[str], deleted: list[str]) -> None:
        """Keep the refresh's view of running instances up to date."""
        for write in writes:
            if write.sub_status in ENDED_SUB_STATUSES:
                self._ages.forget([write.id])
            elif write.id in detailed:
                self._ages.read(write.id)
            elif write.sub_status is not SubStatus.PENDING:
                self._ages.track([write.id])
        self._ages.forget(deleted)
        self._recent.forget(deleted)

    def _wants_details(self, row: InstanceSummary) -> bool:
        policy = self._options.details
        if policy is DetailsPolicy.ALL:
            return True
        if policy is DetailsPolicy.NONE:
            return False
        # From the row's own text: a row our models refuse is refused when mapped, not here.
        return sub_status(row.sub_status) not in ENDED_SUB_STATUSES

    async def _leading(self) -> bool:
        if self._leadership is not None and not await self._leadership.still_held():
            log.warning("sync of %s: lost leadership", self.source.id)
            self._leadership = None
        if self._leadership is None:
            try:
                self._leadership = await self._sink.lead(self.source.id)
            except Exception as exc:  # the database may be down: retry later
                log.warning(
                    "sync of %s: cannot take leadership: %s", self.source.id, _describe(exc)
                )
                return False
            if self._leadership is None:
                log.debug("sync of %s: another process leads", self.source.id)
                return False
            # The previous leader may have moved the cursor and the mirror.
            self._state_loaded = False
            self._ages_loaded = False
            self._sweep.abandon()
        return True

    async def _save_state(self) -> None:
        try:
            await self._writer.apply(SyncBatch(source_id=self.source.id, state=self._state))
        except Exception as exc:  # the mirror itself is unreachable
            log.warning("sync of %s: cannot save state: %s", self.source.id, _describe(exc))

    def _next_delay(self) -> float:
        interval = self.source.poll_interval
        if self._failures == 0:
            return interval
        backoff = min(self._options.max_backoff, interval * 2.0**self._failures)
        return backoff * random.uniform(0.5, 1.0)

    def _record(
        self, report: CycleReport, written: WriteResult, state: SourceState | None = None
    ) -> None:
        report.written.add(written)
        (state if state is not None else self._state).counters.deleted += written.deleted


def _describe(exc: BaseException) -> str:
    """An error for the source's status and the log: ELSA's own message, or a database
    error's first line (never SQL or the rows' values), or the exception's type and text;
    cut to `MAX_ERROR_LENGTH` characters, whatever a server answered."""
    if isinstance(exc, ElsaError):
        text = str(exc) or type(exc).__name__
    elif is_database_error(exc):
        text = describe_database_error(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return clip_error(text)
