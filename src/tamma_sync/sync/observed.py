"""What a source's sync remembers of what it read, so that reading again costs nothing.

`RecentRows` holds the (id, updatedAt) of rows read in the look-back window: each cycle
reads that window again to catch rows ELSA committed late, and a row already read at the
same `updatedAt` is skipped before any detail request. `DetailAges` holds when each
running instance's details were last read, so they are read again before they are
`max_age` old: ELSA changes a running instance's bookmarks and variables without moving
its `updatedAt`. Both live in memory; after a restart the first cycle reads one window's
details again, and the refresh starts over at its steady rate.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from tamma_sync.elsa import ElsaTimestamp, InstanceSummary


class RecentRows:
    """(id, updatedAt ticks) of the rows read since a horizon."""

    def __init__(self) -> None:
        self._at: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()

    def __len__(self) -> int:
        return len(self._at)

    def is_known(self, row: InstanceSummary) -> bool:
        """Whether this row was read before at this very `updatedAt`."""
        return row.updated_at is not None and self._at.get(row.id) == row.updated_at.ticks

    def add(self, rows: Iterable[InstanceSummary]) -> None:
        for row in rows:
            if row.updated_at is not None:
                self._at[row.id] = row.updated_at.ticks
                self._order.append((row.updated_at.ticks, row.id))

    def forget(self, ids: Iterable[str]) -> None:
        for row_id in ids:
            self._at.pop(row_id, None)

    def prune(self, horizon: ElsaTimestamp) -> None:
        """Forget rows stamped before `horizon`: no walk reads them again."""
        while self._order and self._order[0][0] < horizon.ticks:
            ticks, row_id = self._order.popleft()
            if self._at.get(row_id) == ticks:
                del self._at[row_id]


class DetailAges:
    """Running instances, oldest detail read first, and a steady rate of reading them again.

    Each call to `due` hands out `len(self) * elapsed / max_age` instances (at least every
    one older than `max_age`), oldest first, so each is read about every `max_age` seconds
    and the requests are spread evenly instead of arriving in bursts.
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._read_at: OrderedDict[str, float] = OrderedDict()
        self._last_due: float | None = None
        self._owed = 0.0

    def __len__(self) -> int:
        return len(self._read_at)

    def track(self, ids: Iterable[str]) -> None:
        """Instances known to run whose details were not read here yet. They join the end,
        as if read now: after a restart, the steady rate reaches each within `max_age`
        instead of reading them all at once."""
        now = self._clock()
        for instance_id in ids:
            self._read_at.setdefault(instance_id, now)

    def read(self, instance_id: str) -> None:
        """Its details were read just now."""
        self._read_at[instance_id] = self._clock()
        self._read_at.move_to_end(instance_id)

    def forget(self, ids: Iterable[str]) -> None:
        """Ended or gone: no more refreshing."""
        for instance_id in ids:
            self._read_at.pop(instance_id, None)

    def due(self, limit: int) -> list[str]:
        """The instances whose details should be read again now, oldest first."""
        now = self._clock()
        elapsed = 0.0 if self._last_due is None else now - self._last_due
        self._last_due = now
        if self.max_age <= 0 or not self._read_at:
            return []
        self._owed = min(self._owed + len(self._read_at) * elapsed / self.max_age, limit)
        due: list[str] = []
        for instance_id, read_at in self._read_at.items():
            if len(due) >= limit:
                break
            if len(due) >= int(self._owed) and now - read_at < self.max_age:
                break
            due.append(instance_id)
        self._owed = max(self._owed - len(due), 0.0)
        return due
