"""`GET /api/workflows/trends`: instances started, finished and faulted per interval over
the last hour, day or week, for all definitions or one — the dashboard's trend charts.

Read from rollups the store keeps with every instance write (store/trends.py), so a
window costs the same whatever the number of instances.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from tamma_sync.api.deps import StoreDep, ViewWorkflows
from tamma_sync.api.schemas import ERROR_RESPONSES, Trend, TrendInterval
from tamma_sync.store.trends import KINDS, MINUTE_MS, TrendWindow

router = APIRouter(prefix="/api/workflows", tags=["workflows"], responses=ERROR_RESPONSES)

WindowName = Literal["hour", "day", "week"]
#: Each window's interval (minutes) and number of intervals.
WINDOWS: dict[WindowName, tuple[int, int]] = {
    "hour": (1, 60),
    "day": (15, 96),
    "week": (60, 168),
}


@router.get("/trends", response_model_exclude_none=True)
async def trends(
    store: StoreDep,
    tenant: ViewWorkflows,
    window: Annotated[
        WindowName,
        Query(
            description="hour: 60 intervals of a minute; day: 96 of 15 minutes; week: 168 "
            "of an hour. The last interval holds now."
        ),
    ] = "day",
    definition_id: Annotated[
        str | None,
        Query(alias="definitionId", description="One definition's instances only."),
    ] = None,
) -> Trend:
    """Instances started, finished and faulted per interval of the window, oldest first,
    every interval present (zeros included). Counted as the mirror observed them, at the
    source's times: an instance started in the interval of its `createdAt`, finished or
    faulted in that of its `finishedAt` (its `updatedAt` without one). Deleting an
    instance takes nothing back."""
    step, slots = WINDOWS[window]
    now_minute = store.now() // MINUTE_MS
    span = TrendWindow(until=(now_minute // step + 1) * step, step_minutes=step, slots=slots)
    counted = await store.trend(tenant, definition_id, span)
    return Trend(
        window=window,
        definition_id=definition_id,
        interval_seconds=step * 60,
        since=span.since * MINUTE_MS,
        until=span.until * MINUTE_MS,
        **{kind: sum(interval[kind] for interval in counted) for kind in KINDS},
        intervals=[
            TrendInterval(start=(span.since + index * step) * MINUTE_MS, **interval)
            for index, interval in enumerate(counted)
        ],
    )
