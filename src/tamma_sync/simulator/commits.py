"""Pending commits: changes that are stamped but not visible yet (realism's commit lag).

ELSA stamps a change in memory: `WorkflowExecutionContext.TransitionTo` sets
`UpdatedAt = SystemClock.UtcNow` when the sub-status changes
(src/modules/Elsa.Workflows.Core/Contexts/WorkflowExecutionContext.cs). The runner then
publishes its notifications and only afterwards commits the state
(src/modules/Elsa.Workflows.Core/Services/WorkflowRunner.cs, `RunAsync`), and
`WorkflowInstanceManager.SaveAsync` (src/modules/Elsa.Workflows.Management/Services/
WorkflowInstanceManager.cs) stores `UpdatedAt` as stamped. So a change becomes visible a
while after its stamp, and instances become visible out of stamp order; one instance's
commits stay in order because the runner holds the instance while it runs.

A commit here carries the whole new state of its row; the store holds what is visible.
Visibility is applied lazily (`due`) by the simulator at the start of each public call.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from tamma_sync.simulator.instances import InstanceStore, SubStatus


class CommitKind(IntEnum):
    """What a commit does to its row."""

    #: The instance's creation (stamped createdAt = updatedAt).
    CREATE = 0
    #: A status change (stamped updatedAt).
    UPDATE = 1
    #: A status-free commit: variables (and maybe the bookmark) change, no timestamp.
    SILENT = 2


@dataclass(slots=True)
class Commit:
    """One pending commit: the row's whole new state."""

    seq: int
    row: int
    kind: CommitKind
    sub_status: SubStatus
    stage: int
    retries: int
    edits: int
    #: The stamp (unused by a silent commit).
    ticks: int
    #: `time.monotonic()` from which it is visible (inf: until flushed).
    due: float
    done: bool = False


def apply(store: InstanceStore, commit: Commit) -> None:
    """Make one commit visible in the store (its stamp lands at its place in the orders)."""
    row = commit.row
    if commit.kind is CommitKind.CREATE:
        store.reveal(row, commit.ticks)
    elif commit.kind is CommitKind.UPDATE:
        store.update(row, commit.sub_status, commit.stage, commit.retries, commit.ticks)
    if commit.kind is not CommitKind.CREATE:
        store.touch(row, commit.stage, commit.edits)


def apply_all(store: InstanceStore, commits: list[Commit]) -> None:
    """Make commits visible in the order given; several at once are merged into the time
    orders in one pass (as if placed one by one)."""
    if len(commits) < 2:
        for commit in commits:
            apply(store, commit)
        return
    created: dict[int, int] = {}
    updated: dict[int, int] = {}
    for commit in commits:
        row = commit.row
        if commit.kind is CommitKind.CREATE:
            store.sub_status[row] = SubStatus.Pending
            created[row] = updated[row] = commit.ticks
            continue
        if commit.kind is CommitKind.UPDATE:
            store.sub_status[row] = commit.sub_status
            store.retries[row] = min(commit.retries, 255)
            store.updated.remove(row)
            updated.pop(row, None)  # placed in the order of its last stamp
            updated[row] = commit.ticks
        store.touch(row, commit.stage, commit.edits)
    store.created.place_many(created.items())
    store.updated.place_many(updated.items())


class PendingCommits:
    """Commits waiting to become visible, first in first out per instance."""

    def __init__(self, *, lag_seconds: float, manual: bool, seed: int) -> None:
        self._lag = lag_seconds
        self._manual = manual
        self._random = random.Random(seed)
        self._seq = 0
        self._heap: list[tuple[float, int, Commit]] = []
        self._by_row: dict[int, deque[Commit]] = {}
        self._count = 0

    @property
    def count(self) -> int:
        """Commits not visible yet."""
        return self._count

    def has(self, row: int) -> bool:
        """Whether `row` has a commit that is not visible yet."""
        return row in self._by_row

    def latest(self, row: int) -> Commit | None:
        """The row's last pending commit (its newest state), if any."""
        queue = self._by_row.get(row)
        return queue[-1] if queue else None

    def rows(self) -> list[int]:
        """Rows with pending commits."""
        return list(self._by_row)

    def add(
        self,
        row: int,
        kind: CommitKind,
        *,
        sub_status: SubStatus,
        stage: int,
        retries: int,
        edits: int,
        ticks: int,
    ) -> Commit:
        """Queue a commit, visible after a seeded delay in [0, lag] (never before the
        row's earlier commits)."""
        delay = math.inf if self._manual else self._random.uniform(0.0, self._lag)
        due = time.monotonic() + delay
        queue = self._by_row.setdefault(row, deque())
        if queue:
            due = max(due, queue[-1].due)
        self._seq += 1
        commit = Commit(self._seq, row, kind, sub_status, stage, retries, edits, ticks, due)
        queue.append(commit)
        heapq.heappush(self._heap, (due, commit.seq, commit))
        self._count += 1
        return commit

    def due(self, now: float) -> list[Commit]:
        """Take the commits visible at `now`, in the order they became visible."""
        taken: list[Commit] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, commit = heapq.heappop(heap)
            if not commit.done:
                self._finish(commit)
                taken.append(commit)
        return taken

    def take(self, rows: Iterable[int] | None = None) -> list[Commit]:
        """Take every pending commit (or those of `rows`) now, in commit order."""
        if rows is None:
            chosen = [c for queue in self._by_row.values() for c in queue]
        else:
            chosen = [c for row in dict.fromkeys(rows) for c in self._by_row.get(row, ())]
        chosen.sort(key=lambda commit: commit.seq)
        for commit in chosen:
            self._finish(commit)
        self._prune()
        return chosen

    def drop(self, row: int) -> int:
        """Forget the row's pending commits (it was deleted); returns how many."""
        queue = self._by_row.pop(row, None)
        if not queue:
            return 0
        for commit in queue:
            commit.done = True
        self._count -= len(queue)
        self._prune()
        return len(queue)

    def _finish(self, commit: Commit) -> None:
        commit.done = True
        self._count -= 1
        queue = self._by_row[commit.row]
        queue.popleft()
        if not queue:
            del self._by_row[commit.row]

    def _prune(self) -> None:
        """Drop taken commits from the heap once they dominate it."""
        if len(self._heap) > 2 * self._count + 64:
            self._heap = [entry for entry in self._heap if not entry[2].done]
            heapq.heapify(self._heap)
