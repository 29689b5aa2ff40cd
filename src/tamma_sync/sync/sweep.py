"""The deletion sweep: find what ELSA deleted, on a busy server, without a wrong delete.

ELSA deletes for good and tells nobody (no event, no tombstone): the only way to learn of a
deletion is to list ELSA's instances and compare. On a live server the list never holds
still — instances are created and deleted between any two pages, `totalCount` moves, and
rows that share a timestamp change places between requests — so a sweep that waits for
one consistent listing never completes there.

This one lists instances by `CreatedAt`, bounded by a time fixed when the sweep starts
(the delta cursor: everything mirrored then was created before it), so instances created
during the sweep stay out of its pages. It walks the creation order with keyset pages
and cuts it into windows of whole milliseconds (the mirror's precision): once a page ends
at millisecond B, every instance ELSA has created before B has been listed, and the
mirror's instances created in that window can be compared with ELSA's. Those the listing
lacks are only candidates: each is deleted once `GET /workflow-instances/{id}` answers
404 for it, after an instance the window's listing held was seen to answer 200 (a gateway
that answers 404 to everything deletes nothing).

The sweep spends a bounded share of ELSA's time: each request's duration is charged to a
budget refilled at `share` seconds per second, so a large ELSA is swept over many cycles
and a small one within a few poll intervals. ELSA 3.0, which has no timestamp filters,
is listed by offset pages instead (what paging skips is then confirmed like the rest).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from tamma_sync.elsa import (
    Column,
    ElsaClient,
    ElsaError,
    ElsaNotFound,
    ElsaTimestamp,
    InstanceDetail,
    InstanceSummary,
    require_ascending,
)
from tamma_sync.sync.together import run_together

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Instances the listing just held that are asked for before any candidate is confirmed
#: gone (ELSA may have deleted the first since; a proxy answering 404 deletes nothing).
CONTROLS: Final = 3


@dataclass(frozen=True, slots=True)
class Window:
    """Instances created in [start, end) epoch ms (start None: from the first one), every
    one ELSA holds among them listed in `rows`. `last`: the sweep's final window."""

    start: int | None
    end: int
    rows: dict[str, InstanceSummary]
    last: bool


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What ELSA said of the candidates: `gone` (404, or a system workflow left out) and
    `found` (they exist after all)."""

    gone: list[str] = field(default_factory=list)
    found: list[InstanceDetail] = field(default_factory=list)


class Sweep:
    """One source's deletion sweep: its position between cycles, and its budget."""

    def __init__(
        self,
        client: ElsaClient,
        *,
        share: float,
        burst: float,
        min_interval: float,
        concurrency: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._share = share
        self._burst = burst
        self._min_interval = min_interval
        self._slots = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._tokens = burst
        self._refilled = clock()
        self._last_start: float | None = None
        self._bound: ElsaTimestamp | None = None
        self._start_ms: int | None = None
        self._offset = 0
        self._carry: list[InstanceSummary] = []
        self._listed: list[str] = []

    @property
    def running(self) -> bool:
        return self._bound is not None

    def postpone(self) -> None:
        """Count a sweep as started now (after a first full walk there is nothing to find)."""
        self._last_start = self._clock()

    def due(self) -> bool:
        """Whether the budget allows a request now, and a sweep runs or may start."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._share)
        self._refilled = now
        if self._tokens <= 0:
            return False
        if self.running:
            return True
        return self._last_start is None or now - self._last_start >= self._min_interval

    def begin(self, bound: ElsaTimestamp) -> None:
        """Start a sweep of the instances created up to `bound`."""
        self._bound = bound
        self._start_ms = None
        self._offset = 0
        self._carry = []
        self._listed = []
        self._last_start = self._clock()

    def abandon(self) -> None:
        """Drop the sweep under way (its position is no longer trusted); the next starts over."""
        self._bound = None

    async def next_window(self) -> Window | None:
        """Read on until the next window is complete; None when this read completed none
        (a 3.0 offset page all within one millisecond)."""
        assert self._bound is not None, "begin() first"
        start = self._start_ms
        after = None if start is None else ElsaTimestamp.from_epoch_ms(start)
        page = await self._timed(self._client.creation_page(after, self._bound))
        if page is None:
            return await self._offset_window()
        rows = page.rows
        if not page.full or not rows:
            return self._close(rows, None)
        first, last = _created_ms(rows[0], start), _created_ms(rows[-1], start)
        if first == last:  # a whole page in one millisecond: read that millisecond whole
            moment = ElsaTimestamp.from_epoch_ms(last)
            group = await self._timed(
                self._client.instances_between(Column.CREATED, moment, moment.shifted(10_000))
            )
            return self._close(group, last + 1)
        return self._close([row for row in rows if _created_ms(row, start) < last], last)

    async def confirm(self, candidates: Sequence[str]) -> Confirmation:
        """Ask ELSA about each candidate; nothing is confirmed gone unless an instance the
        listing just held answered 200 first."""
        if not candidates or not await self._control_answers():
            return Confirmation()
        gone: list[str] = []
        found: list[InstanceDetail] = []

        async def one(instance_id: str) -> None:
            async with self._slots:
                try:
                    detail = await self._timed(self._client.get_instance(instance_id))
                except ElsaNotFound:
                    gone.append(instance_id)
                    return
                except ElsaError as exc:  # unknown this time: the next sweep asks again
                    log.info("sweep: cannot confirm %s: %s", instance_id, exc)
                    return
            if detail.is_system and not self._client.system_workflows:
                gone.append(instance_id)
            else:
                found.append(detail)

        await run_together(one(instance_id) for instance_id in candidates)
        return Confirmation(gone, found)

    async def _control_answers(self) -> bool:
        """Whether ELSA answers 200 for an instance it listed just now: the newest listed,
        then older ones (ELSA may have deleted one since, or fail to load one), a few at
        most. A sweep that listed nothing up to its bound has no instance to ask for;
        ELSA's listing then says there are none, and 404s agree with it."""
        if not self._listed:
            return not self.running
        for control in reversed(self._listed[-CONTROLS:]):
            try:  # one attempt: an instance ELSA fails to load must not hold the cycle up
                await self._timed(self._client.get_instance(control, once=True))
            except ElsaError:
                continue
            return True
        log.warning(
            "sweep of %s: ELSA answers no instance it has just listed; nothing is deleted",
            self._client.source_id,
        )
        return False

    async def _offset_window(self) -> Window | None:
        """ELSA 3.0: the next offset page by creation; rows at the last millisecond wait
        for the next page, which may hold more of that millisecond."""
        assert self._bound is not None
        size = self._client.page_size
        page = await self._timed(self._client.instances_by_creation(self._offset, size))
        require_ascending(page.items, Column.CREATED)
        self._offset += len(page.items)
        bound = self._bound
        rows = self._carry + [
            row for row in page.items if row.created_at is None or row.created_at <= bound
        ]
        if len(page.items) < size or len(rows) < len(self._carry) + len(page.items):
            self._carry = []
            return self._close(rows, None)
        last = _created_ms(rows[-1], self._start_ms)
        self._carry = [row for row in rows if _created_ms(row, self._start_ms) >= last]
        complete = rows[: len(rows) - len(self._carry)]
        return self._close(complete, last) if complete else None

    def _close(self, rows: Sequence[InstanceSummary], end: int | None) -> Window:
        """The window from the current start to `end` (None: to the bound, the last)."""
        assert self._bound is not None
        last = end is None
        window = Window(
            start=self._start_ms,
            end=self._bound.epoch_ms + 1 if end is None else end,
            rows={row.id: row for row in rows},
            last=last,
        )
        if rows:  # the controls for this window's candidates: the instances it listed
            self._listed = [row.id for row in rows[-CONTROLS:]]
        self._start_ms = window.end
        if last:
            self._bound = None
        return window

    async def _timed(self, request: Awaitable[T]) -> T:
        """Run one ELSA request, charging its duration to the budget."""
        started = self._clock()
        try:
            return await request
        finally:
            self._tokens -= self._clock() - started


def _created_ms(row: InstanceSummary, default: int | None) -> int:
    """The row's creation in epoch ms (rows without one belong to the current window)."""
    if row.created_at is not None:
        return row.created_at.epoch_ms
    return default if default is not None else 0
