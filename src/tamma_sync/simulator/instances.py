"""Workflow instances stored as columns, with ordered indexes, and the list query over them.

A million instances cost a few dozen bytes each: the mutable state lives in `array` and
`bytearray` columns; ids, names, variables and bookmarks are derived on demand. createdAt
never changes and every update stamps a time later than all before it, so both orders are
append-only logs: an update appends the row to the end and leaves a dead entry behind.
Live counts per block of positions let a page at any offset be found without sorting.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

_BLOCK_SHIFT: Final = 10
_BLOCK: Final = 1 << _BLOCK_SHIFT
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


class TimeIndex:
    """Rows ordered by a timestamp that only moves forward: an append-only position log.

    `position[row]` is the row's live position (or -1); an entry is live if its row still
    points at it. Per-block live counts give counts and offsets in O(positions / 1024).
    """

    def __init__(self, ticks: array[int], rows: array[int], row_count: int) -> None:
        self.position = array("q", [-1]) * row_count
        self._load(ticks, rows)

    def _load(self, ticks: array[int], rows: array[int]) -> None:
        self.ticks = ticks
        self.rows = rows
        for position, row in enumerate(rows):
            self.position[row] = position
        self._live = array("q", [0]) * ((len(rows) + _BLOCK - 1) >> _BLOCK_SHIFT)
        for block in range(len(self._live)):
            self._live[block] = min(_BLOCK, len(rows) - (block << _BLOCK_SHIFT))
        self.size = len(rows)

    def append(self, row: int, ticks: int) -> None:
        """Place `row` (absent from the order) at the end: its timestamp is the latest."""
        position = len(self.rows)
        self.ticks.append(ticks)
        self.rows.append(row)
        if row == len(self.position):
            self.position.append(-1)
        self.position[row] = position
        block = position >> _BLOCK_SHIFT
        if block == len(self._live):
            self._live.append(0)
        self._live[block] += 1
        self.size += 1

    def move(self, row: int, ticks: int) -> None:
        """Re-stamp `row` with the latest timestamp."""
        self.remove(row)
        self.append(row, ticks)
        if len(self.rows) > 2 * self.size + 4 * _BLOCK:
            self._compact()

    def remove(self, row: int) -> None:
        """Drop `row` from the order."""
        position = self.position[row]
        if position < 0:
            return
        self.position[row] = -1
        self._live[position >> _BLOCK_SHIFT] -= 1
        self.size -= 1

    def ticks_of(self, row: int) -> int:
        """The timestamp `row` is ordered by."""
        return self.ticks[self.position[row]]

    def _compact(self) -> None:
        live = [p for p in range(len(self.rows)) if self._is_live(p)]
        self._load(
            array("q", (self.ticks[p] for p in live)), array("q", (self.rows[p] for p in live))
        )

    def bounds(self, low: int | None, high: int | None) -> tuple[int, int]:
        """The positions whose ticks t satisfy low <= t < high (None: unbounded)."""
        start = 0 if low is None else bisect.bisect_left(self.ticks, low)
        end = len(self.ticks) if high is None else bisect.bisect_left(self.ticks, high)
        return start, max(start, end)

    def _is_live(self, position: int) -> bool:
        return self.position[self.rows[position]] == position

    def count(self, start: int, end: int) -> int:
        """Live entries in positions [start, end)."""
        total = 0
        position = start
        while position < end:
            block = position >> _BLOCK_SHIFT
            block_end = (block + 1) << _BLOCK_SHIFT
            if position == block << _BLOCK_SHIFT and block_end <= end:
                total += self._live[block]
                position = block_end
            else:
                stop = min(block_end, end)
                total += sum(1 for p in range(position, stop) if self._is_live(p))
                position = stop
        return total

    def scan(self, start: int, end: int, *, descending: bool, skip: int = 0) -> Iterator[int]:
        """Rows of live entries in [start, end), in order, after skipping `skip` of them."""
        if descending:
            yield from self._scan_down(start, end, skip)
            return
        position = start
        while skip and position < end:
            block = position >> _BLOCK_SHIFT
            block_end = (block + 1) << _BLOCK_SHIFT
            whole = position == block << _BLOCK_SHIFT and block_end <= end
            if whole and self._live[block] <= skip:
                skip -= self._live[block]
                position = block_end
                continue
            if self._is_live(position):
                skip -= 1
            position += 1
        for p in range(position, end):
            row = self.rows[p]
            if self.position[row] == p:
                yield row

    def _scan_down(self, start: int, end: int, skip: int) -> Iterator[int]:
        position = end
        while skip and position > start:
            block = (position - 1) >> _BLOCK_SHIFT
            block_start = block << _BLOCK_SHIFT
            whole = position == block_start + _BLOCK and block_start >= start
            if whole and self._live[block] <= skip:
                skip -= self._live[block]
                position = block_start
                continue
            position -= 1
            if self._is_live(position):
                skip -= 1
        for p in range(position - 1, start - 1, -1):
            row = self.rows[p]
            if self.position[row] == p:
                yield row


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
        """Whether `row` names an existing instance."""
        return 0 <= row < len(self.sub_status) and self.sub_status[row] != DELETED

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

    def update(self, row: int, sub_status: SubStatus, stage: int, retries: int, ticks: int) -> None:
        """Store a new state, stamped `ticks` (later than every earlier stamp)."""
        self.sub_status[row] = sub_status
        self.stage[row] = stage
        self.retries[row] = min(retries, 255)
        self.updated.move(row, ticks)

    def delete(self, row: int) -> None:
        """Hard-delete an instance."""
        self.sub_status[row] = DELETED
        self.created.remove(row)
        self.updated.remove(row)

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
) -> tuple[list[int], int]:
    """The rows of one page and the total count, using an index when the order allows.

    Created/UpdatedAt orders walk their time index inside the range their own timestamp
    filters allow; without further filters counting and skipping use block counts, so a
    delta page costs about the page, not the table. Other orders sort the matches.
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
        return _sorted_query(store, order, descending, checks, offset, limit, name_of)
    start, end = index.bounds(low, high)
    if not checks:
        total = index.count(start, end)
        rows = index.scan(start, end, descending=descending, skip=offset)
        return _take(rows, limit), total
    page: list[int] = []
    total = 0
    for row in index.scan(start, end, descending=descending):
        if all(check(row) for check in checks):
            if total >= offset and (limit is None or len(page) < limit):
                page.append(row)
            total += 1
    return page, total


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
) -> tuple[list[int], int]:
    rows = [row for row in store.live_rows() if all(check(row) for check in checks)]

    def finished_key(row: int) -> tuple[int, int]:
        finished = store.finished_at(row)
        return (0, 0) if finished is None else (1, finished)

    def name_key(row: int) -> tuple[int, str]:
        name = name_of(row)
        return (0, "") if name is None else (1, name)

    # SQLite, ELSA's default store, sorts NULL below every value.
    if order is Order.Finished:
        rows.sort(key=finished_key, reverse=descending)
    else:
        rows.sort(key=name_key, reverse=descending)
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
