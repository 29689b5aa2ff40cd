"""Trends: instances started, finished and faulted per interval, for all definitions or one.

Kept as rollups per minute, per quarter hour and per hour, written in the same transaction
as the instance writes they count, so a chart reads at most 168 rows (a week by the hour),
never the instances or the change log. What is counted are the transitions the mirror
observes, each at the source's own time, so an initial sync of months of history charts
that history, not a spike at the time of the sync:

- an instance *started* when it is first written (or written again after it was
  deleted), in the minute of its `createdAt`;
- it *finished* or *faulted* when it is written with that sub-status after another (or
  first written so), in the minute of its `finishedAt`, or of its `updatedAt` without one.

Each span's rollups are kept only as far back as the window reading them reaches, and a
day (`KEPT_MINUTES`): older ones are neither written nor kept (retention purges them).

Deleting or purging an instance takes nothing back: what happened, happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from tamma_sync.models import SubStatus
from tamma_sync.store.dialect import Upsert
from tamma_sync.store.tables import instance_trends

if TYPE_CHECKING:
    from tamma_sync.store.database import Database

TrendKind = Literal["started", "finished", "faulted"]
KINDS: tuple[TrendKind, ...] = ("started", "finished", "faulted")
#: The definition id of the rollups of all definitions (a real one is never empty).
ALL_DEFINITIONS = ""
MINUTE_MS = 60_000
#: The rollups' spans, in minutes: a window reads those of the longest span that divides
#: its intervals (the day's quarter hours, the week's hours).
SPANS = (1, 15, 60)

#: How long each span's rollups are kept, in minutes: as far back as the window that reads
#: them reaches (an hour by the minute, a day by the quarter hour, a week by the hour),
#: and a day more.
KEPT_MINUTES = {1: 1_440 + 60, 15: 2 * 1_440, 60: 8 * 1_440}

#: Moves: {(tenant, definition, span, minute where the span starts): [n of each of KINDS]}.
#: Lists, not Counters: a sync of recent history makes a key for most minutes it covers,
#: and a Counter took 3.6 us to make (rows of 1,000 recent instances were made in 11.3 ms,
#: of old ones in 9.4; with lists, 9.1).
TrendDeltas = dict[tuple[str, str, int, int], list[int]]
#: Where a kind is counted in a delta's list.
_SLOT: dict[TrendKind, int] = {kind: at for at, kind in enumerate(KINDS)}
#: The sub-statuses that end an instance with a trend of their own, and where it is counted.
_ENDING_SLOT = {SubStatus.FINISHED: _SLOT["finished"], SubStatus.FAULTED: _SLOT["faulted"]}


def new_deltas() -> TrendDeltas:
    return {}


def count_transitions(
    deltas: TrendDeltas,
    tenant_id: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    now: int,
) -> None:
    """Add the trend events of writing instance row `new` over the live row `old` (None:
    the instance is new to the mirror) at `now` (epoch ms) to `deltas`: it *started* at
    its `createdAt` if new, and *finished* or *faulted* at its `finishedAt` (else
    `updatedAt`) if it now has that sub-status and did not before. Each event counts for
    its definition and for all definitions, into each span that still keeps its time, so
    an initial sync of months of history writes rollups only for its last days."""
    definition_id = new["definition_id"]
    if old is None:
        _count(deltas, tenant_id, definition_id, _SLOT["started"], new["created_at"], now)
    sub_status = new["sub_status"]
    ending = _ENDING_SLOT.get(sub_status)
    if ending is not None and (old is None or old["sub_status"] != sub_status):
        at = new["finished_at"] or new["updated_at"]
        _count(deltas, tenant_id, definition_id, ending, at, now)


def _count(
    deltas: TrendDeltas, tenant_id: str, definition_id: str, slot: int, at: int, now: int
) -> None:
    minute, now_minute = at // MINUTE_MS, now // MINUTE_MS
    for span in SPANS:
        start = minute // span * span
        if start < now_minute - KEPT_MINUTES[span]:
            continue
        for key in (
            (tenant_id, definition_id, span, start),
            (tenant_id, ALL_DEFINITIONS, span, start),
        ):
            counts = deltas.get(key)
            if counts is None:
                deltas[key] = counts = [0] * len(KINDS)
            counts[slot] += 1


def add_deltas(deltas: TrendDeltas, more: TrendDeltas) -> None:
    """Add `more` (used up) to `deltas`."""
    for key, counts in more.items():
        mine = deltas.get(key)
        if mine is None:
            deltas[key] = counts
        else:
            for slot, n in enumerate(counts):
                mine[slot] += n


#: What adds trend deltas to the rollups, inserting the spans that have none yet.
ADD_TO_ROLLUPS = Upsert(
    instance_trends,
    ("tenant_id", "definition_id", "span_minutes", "minute", *KINDS),
    ("tenant_id", "definition_id", "span_minutes", "minute"),
    add=True,
)


def rollup_rows(deltas: TrendDeltas) -> list[dict[str, Any]]:
    """`deltas` as the rows `ADD_TO_ROLLUPS` adds (in the write transaction, which writers
    take one at a time)."""
    return [
        {
            "tenant_id": tenant_id,
            "definition_id": definition_id,
            "span_minutes": span,
            "minute": minute,
            "started": started,
            "finished": finished,
            "faulted": faulted,
        }
        for (tenant_id, definition_id, span, minute), (started, finished, faulted) in sorted(
            deltas.items()
        )
    ]


@dataclass(frozen=True)
class TrendWindow:
    """`slots` intervals of `step_minutes` each, the last one holding minute `until - 1`."""

    until: int
    step_minutes: int
    slots: int

    @property
    def since(self) -> int:
        return self.until - self.step_minutes * self.slots

    @property
    def span(self) -> int:
        """The longest rollup span that divides the intervals (and so their starts)."""
        return max(s for s in SPANS if self.step_minutes % s == 0 and self.until % s == 0)


#: Built once: a window's rollups, read along the primary key. Summed into intervals
#: here, not by a GROUP BY: each row is one interval of the windows the API offers.
_in_window = sa.select(
    instance_trends.c.minute, *(instance_trends.c[kind] for kind in KINDS)
).where(
    instance_trends.c.tenant_id == sa.bindparam("tenant_id", type_=sa.String),
    instance_trends.c.definition_id == sa.bindparam("definition_id", type_=sa.String),
    instance_trends.c.span_minutes == sa.bindparam("span", type_=sa.SmallInteger),
    instance_trends.c.minute >= sa.bindparam("since", type_=sa.BigInteger),
    instance_trends.c.minute < sa.bindparam("until", type_=sa.BigInteger),
)


async def trend(
    db: Database, tenant_id: str, definition_id: str | None, window: TrendWindow
) -> list[dict[TrendKind, int]]:
    """Started, finished and faulted in each interval of `window`, oldest first: of one
    definition, or of all (`definition_id` None)."""
    parameters = {
        "tenant_id": tenant_id,
        "definition_id": ALL_DEFINITIONS if definition_id is None else definition_id,
        "span": window.span,
        "since": window.since,
        "until": window.until,
    }
    found: list[dict[TrendKind, int]] = [dict.fromkeys(KINDS, 0) for _ in range(window.slots)]
    since, step = window.since, window.step_minutes
    for minute, started, finished, faulted in await db.read_rows(_in_window, parameters):
        interval = found[(minute - since) // step]
        interval["started"] += started
        interval["finished"] += finished
        interval["faulted"] += faulted
    return found
