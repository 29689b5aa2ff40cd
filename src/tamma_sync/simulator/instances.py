"""Workflow instances stored as columns, with ordered indexes, and the list query over them.

A million instances cost a few dozen bytes each: the mutable state lives in `array` and
`bytearray` columns; ids, names, variables and bookmarks are derived on demand. createdAt
never changes and, in the quiet simulator, every update stamps a time later than all
before it, so both orders are append-only logs: an update appends the row to the end and
leaves a dead entry behind. A late commit (realism's commit lag) is inserted at its stamp's
place instead; only the positions after it move. Live counts per block of positions let a
page at any offset be found without sorting.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from tamma_sync.simulator.timeindex import TimeIndex

_NEVER_LOW: Final = -(1 << 126)
_NEVER_HIGH: Final = 1 << 126


class SubStatus(IntEnum):
    """ELSA 3.7's WorkflowSubStatus (the wire names are the member names)."""

    Pending = 0
    Executing = 1
    Suspended = 2
    Finished = 3
    Cancelled = 4
    Faulted = 5

    @property
    def status(self) -> str:
        """The coarse WorkflowStatus ELSA reports with this sub-status."""
        return "Finished" if self >= SubStatus.Finished else "Running"

    @property
    def ended(self) -> bool:
        """Whether the instance is over (it then has a finishedAt)."""
        return self >= SubStatus.Finished


DELETED: Final = 255
"""The sub-status byte of a deleted row."""
HIDDEN: Final = 254
"""The sub-status byte of a row whose creation is not committed (visible) yet."""


class InstanceStore:
    """The per-instance columns and the two time orders (createdAt, updatedAt)."""

    def __init__(
        self,
        *,
        version_row: array[int],
        sub_status: bytearray,
        stage: bytearray,
        retries: bytearray,
        created: TimeIndex,
        updated: TimeIndex,
    ) -> None:
        self.version_row = version_row
        self.sub_status = sub_status
        self.stage = stage
        self.retries = retries
        self.created = created
        self.updated = updated
        #: Status-free commits per row (sparse: most rows never have one).
        self.edits: dict[int, int] = {}

    @classmethod
    def seeded(
        cls,
        *,
        version_row: array[int],
        sub_status: bytearray,
        stage: bytearray,
        retries: bytearray,
        created_ticks: array[int],
        updated_ticks: array[int],
    ) -> InstanceStore:
        """Build from seeded columns; createdAt must already ascend with the row number."""
        count = len(version_row)
        by_update = sorted(range(count), key=updated_ticks.__getitem__)
        return cls(
            version_row=version_row,
            sub_status=sub_status,
            stage=stage,
            retries=retries,
            created=TimeIndex(created_ticks, array("q", range(count)), count),
            updated=TimeIndex(
                array("q", map(updated_ticks.__getitem__, by_update)),
                array("q", by_update),
                count,
            ),
        )

    @property
    def row_count(self) -> int:
        """Rows ever created (deleted ones included)."""
        return len(self.version_row)

    @property
    def live_count(self) -> int:
        """Instances that exist."""
        return self.created.size

    def is_live(self, row: int) -> bool:
        """Whether `row` names an existing (committed) instance."""
        return 0 <= row < len(self.sub_status) and self.sub_status[row] < HIDDEN

    def is_hidden(self, row: int) -> bool:
        """Whether `row` is an instance whose creation is not committed yet."""
        return 0 <= row < len(self.sub_status) and self.sub_status[row] == HIDDEN

    def add(self, version_row: int, ticks: int) -> int:
        """A new Pending instance created (and updated) at `ticks`; returns its row."""
        row = len(self.version_row)
        self.version_row.append(version_row)
        self.sub_status.append(SubStatus.Pending)
        self.stage.append(0)
        self.retries.append(0)
        self.created.append(row, ticks)
        self.updated.append(row, ticks)
        return row

    def reserve(self, version_row: int) -> int:
        """A row for an instance whose creation is not committed yet (in no order)."""
        row = len(self.version_row)
        self.version_row.append(version_row)
        self.sub_status.append(HIDDEN)
        self.stage.append(0)
        self.retries.append(0)
        return row

    def reveal(self, row: int, ticks: int) -> None:
        """Commit a reserved row's creation, stamped `ticks` (possibly an old stamp)."""
        self.sub_status[row] = SubStatus.Pending
        self.created.place(row, ticks)
        self.updated.place(row, ticks)

    def update(self, row: int, sub_status: SubStatus, stage: int, retries: int, ticks: int) -> None:
        """Store a new state, stamped `ticks` (not older than the row's current stamp)."""
        self.sub_status[row] = sub_status
        self.stage[row] = stage
        self.retries[row] = min(retries, 255)
        self.updated.move(row, ticks)

    def touch(self, row: int, stage: int, edits: int) -> None:
        """A status-free commit: the stage and edit count change, no timestamp does."""
        self.stage[row] = stage
        if edits:
            self.edits[row] = edits
        else:
            self.edits.pop(row, None)

    def delete(self, row: int) -> None:
        """Hard-delete an instance (committed or not)."""
        self.sub_status[row] = DELETED
        self.created.remove(row)
        self.updated.remove(row)
        self.edits.pop(row, None)

    def created_at(self, row: int) -> int:
        """createdAt ticks of a live row."""
        return self.created.ticks_of(row)

    def updated_at(self, row: int) -> int:
        """updatedAt ticks of a live row."""
        return self.updated.ticks_of(row)

    def finished_at(self, row: int) -> int | None:
        """finishedAt ticks: the last update of an ended instance (it never changes again)."""
        return self.updated_at(row) if self.sub_status[row] >= SubStatus.Finished else None

    def live_rows(self) -> Iterator[int]:
        """Every live row, oldest first."""
        return self.created.scan(0, len(self.created.rows), descending=False)


class Column(IntEnum):
    """The timestamp columns a filter or an order can use."""

    CreatedAt = 0
    UpdatedAt = 1
    FinishedAt = 2


class Operator(IntEnum):
    """ELSA's TimestampFilterOperator."""

    Is = 0
    IsNot = 1
    GreaterThan = 2
    GreaterThanOrEqual = 3
    LessThan = 4
    LessThanOrEqual = 5


@dataclass(frozen=True, slots=True)
class TimestampFilter:
    """One `timestampFilters` entry, including ELSA's whole-day rule for midnights."""

    column: Column
    operator: Operator
    ticks: int
    #: [start, end) of the calendar day when the timestamp's time of day is 00:00:00.
    whole_day: tuple[int, int] | None = None

    def interval(self) -> tuple[int | None, int | None] | None:
        """The matching ticks as [low, high) (None = unbounded); None for IsNot."""
        t = self.ticks
        if self.whole_day is not None:
            start, end = self.whole_day
            ranges = {
                Operator.Is: (start, end),
                Operator.GreaterThan: (end + 1, None),
                Operator.GreaterThanOrEqual: (start, None),
                Operator.LessThan: (None, start),
                Operator.LessThanOrEqual: (None, end + 1),
            }
        else:
            ranges = {
                Operator.Is: (t, t + 1),
                Operator.GreaterThan: (t + 1, None),
                Operator.GreaterThanOrEqual: (t, None),
                Operator.LessThan: (None, t),
                Operator.LessThanOrEqual: (None, t + 1),
            }
        return ranges.get(self.operator)


class Order(IntEnum):
    """ELSA's OrderByWorkflowInstance."""

    Created = 0
    UpdatedAt = 1
    Finished = 2
    Name = 3


Predicate = Callable[[int], bool]


def run_query(
    store: InstanceStore,
    *,
    order: Order,
    descending: bool,
    filters: Sequence[TimestampFilter],
    predicate: Predicate | None,
    offset: int,
    limit: int | None,
    name_of: Callable[[int], str | None],
    shuffle: random.Random | None = None,
) -> tuple[list[int], int]:
    """The rows of one page and the total count, using an index when the order allows.

    Created/UpdatedAt orders walk their time index inside the range their own timestamp
    filters allow; without further filters counting and skipping use block counts, so a
    delta page costs about the page, not the table. Other orders sort the matches.
    `shuffle`: rows with equal sort keys come in a random order (drawn from it) before
    the page is cut, as a database without a tie-breaker returns them.
    """
    checks: list[Predicate] = [] if predicate is None else [predicate]
    index = {Order.Created: store.created, Order.UpdatedAt: store.updated}.get(order)
    indexed_column = Column.CreatedAt if order is Order.Created else Column.UpdatedAt
    low: int | None = None
    high: int | None = None
    for entry in filters:
        interval = entry.interval() if index is not None else None
        if entry.column is indexed_column and interval is not None:
            low = _tighter(low, interval[0], max)
            high = _tighter(high, interval[1], min)
        else:
            checks.append(_column_check(store, entry))
    if index is None:
        return _sorted_query(store, order, descending, checks, offset, limit, name_of, shuffle)
    start, end = index.bounds(low, high)
    if not checks:
        total = index.count(start, end)
        rows = _take(index.scan(start, end, descending=descending, skip=offset), limit)
        if shuffle is not None and rows:
            window, first = _tie_window(index, start, end, rows, descending)
            rows = shuffle_ties(window, index.ticks_of, first, len(rows), shuffle)
        return rows, total
    if shuffle is not None:
        matches = [
            row
            for row in index.scan(start, end, descending=descending)
            if all(check(row) for check in checks)
        ]
        return shuffle_ties(matches, index.ticks_of, offset, limit, shuffle), len(matches)
    page: list[int] = []
    total = 0
    for row in index.scan(start, end, descending=descending):
        if all(check(row) for check in checks):
            if total >= offset and (limit is None or len(page) < limit):
                page.append(row)
            total += 1
    return page, total


def _tie_window(
    index: TimeIndex, start: int, end: int, page: list[int], descending: bool
) -> tuple[list[int], int]:
    """The page with the rows just before and after it (in scan order) that tie with its
    first and last row; returns the window and where the page starts in it."""
    position, rows, ticks = index.position, index.rows, index.ticks

    def tied(row: int, step: int) -> list[int]:
        at = position[row]
        key = ticks[at]
        found: list[int] = []
        p = at + step
        while start <= p < end and ticks[p] == key:
            if position[rows[p]] == p:
                found.append(rows[p])
            p += step
        return found

    back, forward = (1, -1) if descending else (-1, 1)
    before = tied(page[0], back)
    before.reverse()
    return before + page + tied(page[-1], forward), len(before)


def shuffle_ties(
    rows: list[int],
    key: Callable[[int], object],
    offset: int,
    limit: int | None,
    rng: random.Random,
) -> list[int]:
    """`rows[offset:offset + limit]` after shuffling each run of equal keys in `rows`
    (only the runs the page touches are drawn: a page of a shuffled run is a random
    sample of it)."""
    end = len(rows) if limit is None else min(offset + limit, len(rows))
    if offset >= end:
        return []
    page = rows[offset:end]
    i = offset
    while i < end:
        value = key(rows[i])
        low = i
        while low > 0 and key(rows[low - 1]) == value:
            low -= 1
        high = i + 1
        while high < len(rows) and key(rows[high]) == value:
            high += 1
        stop = min(high, end)
        if high - low > 1:
            page[i - offset : stop - offset] = rng.sample(rows[low:high], stop - i)
        i = stop
    return page


def _tighter(bound: int | None, other: int | None, pick: Callable[[int, int], int]) -> int | None:
    if bound is None or other is None:
        return other if bound is None else bound
    return pick(bound, other)


def _take(rows: Iterator[int], limit: int | None) -> list[int]:
    if limit is None:
        return list(rows)
    page: list[int] = []
    for row in rows:
        if len(page) >= limit:
            break
        page.append(row)
    return page


def _column_check(store: InstanceStore, entry: TimestampFilter) -> Predicate:
    """A filter on a column the walked index is not ordered by (SQL: null matches nothing,
    not even IsNot)."""
    readers: dict[Column, Callable[[int], int | None]] = {
        Column.CreatedAt: store.created_at,
        Column.UpdatedAt: store.updated_at,
        Column.FinishedAt: store.finished_at,
    }
    read = readers[entry.column]
    interval = entry.interval()
    if interval is None:
        low, high = entry.whole_day or (entry.ticks, entry.ticks + 1)
        inside = False
    else:
        low = _NEVER_LOW if interval[0] is None else interval[0]
        high = _NEVER_HIGH if interval[1] is None else interval[1]
        inside = True

    def check(row: int) -> bool:
        value = read(row)
        return value is not None and (low <= value < high) == inside

    return check


def _sorted_query(
    store: InstanceStore,
    order: Order,
    descending: bool,
    checks: list[Predicate],
    offset: int,
    limit: int | None,
    name_of: Callable[[int], str | None],
    shuffle: random.Random | None,
) -> tuple[list[int], int]:
    rows = [row for row in store.live_rows() if all(check(row) for check in checks)]

    def finished_key(row: int) -> tuple[int, int]:
        finished = store.finished_at(row)
        return (0, 0) if finished is None else (1, finished)

    def name_key(row: int) -> tuple[int, str]:
        name = name_of(row)
        return (0, "") if name is None else (1, name)

    # SQLite, ELSA's default store, sorts NULL below every value.
    key: Callable[[int], object]
    if order is Order.Finished:
        rows.sort(key=finished_key, reverse=descending)
        key = finished_key
    else:
        rows.sort(key=name_key, reverse=descending)
        key = name_key
    if shuffle is not None:
        return shuffle_ties(rows, key, offset, limit, shuffle), len(rows)
    end = None if limit is None else offset + limit
    return rows[offset:end], len(rows)


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """The parsed filters, order and page of `GET|POST /workflow-instances`."""

    page: int | None = None
    page_size: int | None = None
    search_term: str | None = None
    definition_id: str | None = None
    definition_ids: tuple[str, ...] | None = None
    correlation_id: str | None = None
    name: str | None = None
    version: int | None = None
    has_incidents: bool | None = None
    is_system: bool | None = None
    #: Allowed sub-statuses: status, statuses, subStatus and subStatuses intersected.
    sub_statuses: frozenset[SubStatus] | None = None
    order: Order = Order.Created
    descending: bool = True
    timestamp_filters: tuple[TimestampFilter, ...] = ()
