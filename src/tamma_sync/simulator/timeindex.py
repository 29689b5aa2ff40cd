"""A time order of instance rows (createdAt or updatedAt) as a position log.

Stamps mostly arrive in order, so the log is appended to and an update leaves a dead entry
behind; a late stamp is inserted at its place. Live counts per block of 1024 positions
give counts and page offsets without walking every entry.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Iterator
from typing import Final

_BLOCK_SHIFT: Final = 10
_BLOCK: Final = 1 << _BLOCK_SHIFT


def _stamp(entry: tuple[int, int]) -> int:
    return entry[0]


class TimeIndex:
    """Rows ordered by a timestamp: a position log, appended to while stamps only move
    forward, with an insert for a late stamp.

    `position[row]` is the row's live position (or -1); an entry is live if its row still
    points at it. Per-block live counts give counts and offsets in O(positions / 1024).
    A row's live entry always lies after its dead ones (its stamps never go back).
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
        while row >= len(self.position):
            self.position.append(-1)
        self.position[row] = position
        block = position >> _BLOCK_SHIFT
        if block == len(self._live):
            self._live.append(0)
        self._live[block] += 1
        self.size += 1

    def place(self, row: int, ticks: int) -> None:
        """Place `row` (absent from the order) at its stamp's place: at the end when no
        stamp is later (the quiet path), else after the entries with equal stamps."""
        if not self.ticks or ticks >= self.ticks[-1]:
            self.append(row, ticks)
        else:
            self._insert(row, ticks)

    def _insert(self, row: int, ticks: int) -> None:
        """A late stamp: insert it; only the later entries' positions and the counts of
        their blocks change, so a commit landing near the end stays cheap."""
        at = bisect.bisect_right(self.ticks, ticks)
        self.ticks.insert(at, ticks)
        self.rows.insert(at, row)
        while row >= len(self.position):
            self.position.append(-1)
        position, rows = self.position, self.rows
        for p in range(len(rows) - 1, at, -1):
            moved = rows[p]
            if position[moved] == p - 1:
                position[moved] = p
        position[row] = at
        self.size += 1
        end = len(rows)
        blocks = (end + _BLOCK - 1) >> _BLOCK_SHIFT
        while len(self._live) < blocks:
            self._live.append(0)
        for block in range(at >> _BLOCK_SHIFT, blocks):
            low = block << _BLOCK_SHIFT
            high = min(low + _BLOCK, end)
            self._live[block] = sum(1 for p in range(low, high) if position[rows[p]] == p)

    def place_many(self, items: Iterable[tuple[int, int]]) -> None:
        """Place several (row, ticks) (rows absent from the order) at once, in one merge
        of the tail after the earliest stamp: equal stamps keep the order already there,
        then the order given. Costs the tail plus the batch, not a tail per row."""
        batch = list(items)
        if not batch:
            return
        position, rows, ticks = self.position, self.rows, self.ticks
        at = bisect.bisect_right(ticks, min(stamp for _, stamp in batch))
        tail = [(ticks[p], rows[p]) for p in range(at, len(rows)) if position[rows[p]] == p]
        merged = sorted(tail + [(stamp, row) for row, stamp in batch], key=_stamp)
        del ticks[at:]
        del rows[at:]
        first = at >> _BLOCK_SHIFT
        del self._live[first:]
        base = first << _BLOCK_SHIFT
        self._live.append(sum(1 for p in range(base, at) if position[rows[p]] == p))
        live = self._live
        for stamp, row in merged:
            at = len(rows)
            ticks.append(stamp)
            rows.append(row)
            while row >= len(position):
                position.append(-1)
            position[row] = at
            block = at >> _BLOCK_SHIFT
            if block == len(live):
                live.append(0)
            live[block] += 1
        self.size += len(batch)
        if len(rows) > 2 * self.size + 4 * _BLOCK:
            self._compact()

    def move(self, row: int, ticks: int) -> None:
        """Re-stamp `row` (its new stamp is not older than its current one)."""
        self.remove(row)
        self.place(row, ticks)
        if len(self.rows) > 2 * self.size + 4 * _BLOCK:
            self._compact()

    def remove(self, row: int) -> None:
        """Drop `row` from the order (if it is in it)."""
        if row >= len(self.position):
            return
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

    def live_rows_from_start(self) -> Iterator[int]:
        """Live rows in order, skipping whole blocks without live entries."""
        position, rows = self.position, self.rows
        end = len(rows)
        for block, live in enumerate(self._live):
            if not live:
                continue
            low = block << _BLOCK_SHIFT
            for p in range(low, min(low + _BLOCK, end)):
                row = rows[p]
                if position[row] == p:
                    yield row

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
