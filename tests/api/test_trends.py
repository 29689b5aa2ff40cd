"""`GET /api/workflows/trends`: the dashboard's trend charts, over HTTP on both databases."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

MINUTE = 60_000


def _interval_of(trend: dict[str, Any], at: int) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        interval
        for interval in trend["intervals"]
        if interval["start"] <= at < interval["start"] + trend["intervalSeconds"] * 1000
    ]
    assert len(found) == 1
    return found[0]


def test_each_window_counts_what_was_written_in_its_intervals(client: httpx.Client) -> None:
    now = int(time.time() * 1000)
    written = [
        {
            "id": "run",
            "definitionId": "wf",
            "createdAt": now - 10 * MINUTE,
            "subStatus": "Executing",
        },
        {
            "id": "done",
            "definitionId": "wf",
            "createdAt": now - 20 * MINUTE,
            "finishedAt": now - 5 * MINUTE,
            "subStatus": "Finished",
        },
        {
            "id": "broke",
            "definitionId": "other",
            "createdAt": now - 3 * 60 * MINUTE,
            "updatedAt": now - 2 * MINUTE,
            "subStatus": "Faulted",
        },
    ]
    for body in written:
        assert client.post("/api/workflows/instances", json=body).status_code == 201

    hour = client.get("/api/workflows/trends", params={"window": "hour"}).json()
    assert (hour["window"], hour["intervalSeconds"], len(hour["intervals"])) == ("hour", 60, 60)
    assert hour["until"] - hour["since"] == 60 * MINUTE
    assert hour["since"] <= now < hour["until"]
    # "broke" started three hours ago: before this window.
    assert (hour["started"], hour["finished"], hour["faulted"]) == (2, 1, 1)
    assert _interval_of(hour, now - 10 * MINUTE)["started"] == 1
    assert _interval_of(hour, now - 5 * MINUTE)["finished"] == 1
    assert _interval_of(hour, now - 2 * MINUTE)["faulted"] == 1

    day = client.get("/api/workflows/trends").json()
    assert (day["window"], day["intervalSeconds"], len(day["intervals"])) == ("day", 900, 96)
    assert (day["started"], day["finished"], day["faulted"]) == (3, 1, 1)
    week = client.get("/api/workflows/trends", params={"window": "week"}).json()
    assert (week["intervalSeconds"], len(week["intervals"]), week["started"]) == (3600, 168, 3)

    one = client.get("/api/workflows/trends", params={"definitionId": "wf"}).json()
    assert (one["definitionId"], one["started"], one["finished"], one["faulted"]) == ("wf", 2, 1, 0)
    unknown = client.get("/api/workflows/trends", params={"definitionId": "nope"}).json()
    assert unknown["started"] == 0 and len(unknown["intervals"]) == 96


@pytest.mark.parametrize("window", ["month", "", "HOUR"])
def test_an_unknown_window_is_400(client: httpx.Client, window: str) -> None:
    response = client.get("/api/workflows/trends", params={"window": window})
    assert response.status_code == 400
    assert "window" in response.json()["error"]
