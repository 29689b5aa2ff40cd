"""Paged listings of a live ELSA: what a page means, and how a bound is sent.

ELSA orders by one key with no tie-breaker and counts `totalCount` anew for every page
(elsa-core's WorkflowInstanceStore), so on a busy server offset pages skip and repeat
rows. The walks here are keyset walks on a timestamp; rows that share one timestamp are
fetched as a whole group in one request rather than paged by offset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise
from typing import Any, Generic, TypeVar

from tamma_sync.elsa.errors import ElsaProtocolError
from tamma_sync.elsa.timestamps import ElsaTimestamp
from tamma_sync.elsa.wire import InstanceSummary

T = TypeVar("T")


class Column(StrEnum):
    """The instance timestamps ELSA filters and orders on."""

    CREATED = "CreatedAt"
    UPDATED = "UpdatedAt"


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """A full paged listing, and whether it can be trusted as complete.

    `problems` names every sign that the pages were not one consistent snapshot
    (totalCount changing, a short page before totalCount was reached, rows repeated across
    pages, a missing totalCount). A caller must not delete anything based on a listing
    that is not `complete`.
    """

    items: tuple[T, ...]
    total_count: int | None
    problems: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of instances changed since a bound.

    `cursor` is safe to persist once `items` are stored: every instance visible with an
    `updatedAt` before it has been delivered. `items` are deduplicated on (id, updatedAt)
    within one walk. `server_filtered` is False on ELSA 3.0, where the walk is a full
    listing filtered here.
    """

    items: tuple[InstanceSummary, ...]
    cursor: ElsaTimestamp | None
    server_filtered: bool


def filter_timestamp(cursor: ElsaTimestamp) -> str:
    """The text to send as a `GreaterThanOrEqual` bound for `cursor`.

    ELSA treats a filter timestamp whose time of day is exactly 00:00:00.0000000 as a whole
    calendar day (in the server's local offset): `GreaterThanOrEqual` midnight would still
    work but `GreaterThan`/`LessThanOrEqual` jump to the end of the day, and which branch
    applies differs between versions. So midnight is never sent. The bound moves one tick
    *earlier*, not later: with `>=`, an earlier bound can only add rows stamped in that
    single 100-ns tick (deduplicated downstream on (id, updatedAt)), while a later bound
    would silently drop the rows stamped exactly at midnight.
    """
    return (cursor.shifted(-1) if cursor.is_midnight else cursor).to_iso()


def at_least(column: Column, bound: ElsaTimestamp) -> dict[str, Any]:
    """`column >= bound` (one tick earlier at midnight: callers keep only rows inside)."""
    return {
        "column": column.value,
        "operator": "GreaterThanOrEqual",
        "timestamp": filter_timestamp(bound),
    }


def below(column: Column, bound: ElsaTimestamp) -> dict[str, Any]:
    """`column < bound` (one tick later at midnight: callers keep only rows inside)."""
    sent = bound.shifted(1) if bound.is_midnight else bound
    return {"column": column.value, "operator": "LessThan", "timestamp": sent.to_iso()}


def stamp(row: InstanceSummary, column: Column) -> ElsaTimestamp | None:
    return row.created_at if column is Column.CREATED else row.updated_at


def within(
    rows: Sequence[InstanceSummary],
    column: Column,
    low: ElsaTimestamp | None,
    high: ElsaTimestamp | None,
) -> list[InstanceSummary]:
    """The rows whose `column` lies in [low, high); rows without the stamp are kept."""
    kept = []
    for row in rows:
        at = stamp(row, column)
        if at is None or ((low is None or at >= low) and (high is None or at < high)):
            kept.append(row)
    return kept


def require_ascending(rows: Sequence[InstanceSummary], column: Column) -> None:
    """A keyset walk over a server that ignored the requested order would skip rows silently."""
    stamps = [at for row in rows if (at := stamp(row, column)) is not None]
    if any(later < earlier for earlier, later in pairwise(stamps)):
        raise ElsaProtocolError(
            f"rows are not in ascending {column.value} order: the server ignored "
            "orderBy/orderDirection",
            method="POST",
            path="/workflow-instances",
            status=200,
        )


@dataclass
class PagedScan(Generic[T]):
    """Walks a zero-based, totalCount-reporting listing and notes where it was inconsistent."""

    fetch: Callable[[int], Awaitable[tuple[Sequence[T], int | None]]]
    key: Callable[[T], Hashable]
    page_size: int
    problems: list[str] = field(default_factory=list)
    total_count: int | None = None

    async def pages(self) -> AsyncIterator[list[T]]:
        """Yield each page's rows not seen on an earlier page, until a short page."""
        seen: set[Hashable] = set()
        first_total: int | None = None
        page = 0
        while True:
            rows, total = await self.fetch(page)
            self._check_total(page, total, first_total)
            if first_total is None:
                first_total = total
            self.total_count = total if total is not None else self.total_count
            fresh = []
            for row in rows:
                row_key = self.key(row)
                if row_key not in seen:
                    seen.add(row_key)
                    fresh.append(row)
            if len(fresh) < len(rows):
                self.problems.append(
                    f"page {page} repeated {len(rows) - len(fresh)} row(s) of earlier pages"
                )
            yield fresh
            if len(rows) > self.page_size:
                self.problems.append(
                    f"page {page} had {len(rows)} rows, more than pageSize {self.page_size}"
                )
                break
            if len(rows) < self.page_size or not fresh:
                break
            page += 1
        if self.total_count is not None and len(seen) != self.total_count:
            self.problems.append(
                f"listing ended at page {page} with {len(seen)} rows, "
                f"totalCount says {self.total_count}"
            )

    def _check_total(self, page: int, total: int | None, first_total: int | None) -> None:
        if total is None:
            self.problems.append(f"page {page} had no totalCount")
        elif first_total is not None and total != first_total:
            self.problems.append(f"totalCount changed from {first_total} to {total} at page {page}")
