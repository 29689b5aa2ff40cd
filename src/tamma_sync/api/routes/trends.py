"""`GET /api/workflows/trends`: instances started, finished and faulted per interval over
the last hour, day or week, for all definitions or one — the dashboard's trend charts.

Read from rollups the store keeps with every instance write (store/trends.py), so a
window costs the same whatever the number of instances.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from tamma_sync.api.deps import StoreDep, ViewWorkflows
from tamma_sync.api.responses import JsonBytes, json_response
from tamma_sync.api.schemas import ERROR_RESPONSES, Trend
from tamma_sync.store.trends import KINDS, MINUTE_MS, TrendWindow

router = APIRouter(prefix="/api/workflows", tags=["workflows"], responses=ERROR_RESPONSES)

WindowName = Literal["hour", "day", "week"]
#: Each window's interval (minutes) and number of intervals.
WINDOWS: dict[WindowName, tuple[int, int]] = {
    "hour": (1, 60),
    "day": (15, 96),
    "week": (60, 168),
}


@router.get("/trends", response_model=Trend, response_model_exclude_none=True)
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
) -> JsonBytes:
    """Instances started, finished and faulted per interval of the window, oldest first,
    every interval present (zeros included). Counted as the mirror observed them, at the
    source's times: an instance started in the interval of its `createdAt`, finished or
    faulted in that of its `finishedAt` (its `updatedAt` without one). Deleting an
    instance takes nothing back."""
    step, slots = WINDOWS[window]
    now_minute = store.now() // MINUTE_MS
    span = TrendWindow(until=(now_minute // step + 1) * step, step_minutes=step, slots=slots)
    counted = await store.trend(tenant, definition_id, span)
    # Encoded here, not through `Trend`: a model per interval cost a millisecond of the
    # server's CPU per request (the schema above still documents the body).
    body: dict[str, object] = {"window": window}
    if definition_id is not None:
        body["definitionId"] = definition_id
    body["intervalSeconds"] = step * 60
    body["since"] = span.since * MINUTE_MS
    body["until"] = span.until * MINUTE_MS
    for kind in KINDS:
        body[kind] = sum(interval[kind] for interval in counted)
    body["intervals"] = [
        {"start": (span.since + index * step) * MINUTE_MS, **interval}
        for index, interval in enumerate(counted)
    ]
    return json_response(body)
