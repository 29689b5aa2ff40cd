"""`GET /api/workflows/instances/{id}/history`: every change the mirror observed of an
instance, with what changed and how long each state lasted, on both databases."""

from __future__ import annotations

import httpx

#: The source's own times (ms), sent as `updatedAt` the way a sync writer sends ELSA's.
STARTED, SUSPENDED, RESUMED, FINISHED = 1_000_000, 1_004_000, 1_010_000, 1_012_500


def _instance(client: httpx.Client, **body: object) -> None:
    created = client.post("/api/workflows/instances", json={"definitionId": "wf", **body})
    assert created.status_code == 201, created.text


def _put(client: httpx.Client, instance_id: str, **body: object) -> None:
    response = client.put(f"/api/workflows/instances/{instance_id}", json=body)
    assert response.status_code == 200, response.text


def _history(client: httpx.Client, instance_id: str, **params: int) -> httpx.Response:
    return client.get(f"/api/workflows/instances/{instance_id}/history", params=params)


def _live_through_a_day(client: httpx.Client) -> None:
    _instance(
        client,
        id="i1",
        status="Running",
        subStatus="Executing",
        currentActivity="Intake",
        createdAt=STARTED,
        updatedAt=STARTED,
    )
    _put(client, "i1", subStatus="Suspended", currentActivity="Review", updatedAt=SUSPENDED)
    _put(client, "i1", subStatus="Suspended", currentActivity="Review", updatedAt=SUSPENDED)
    _put(client, "i1", variables={"approved": True}, updatedAt=RESUMED)
    _put(
        client,
        "i1",
        status="Finished",
        subStatus="Finished",
        updatedAt=FINISHED,
        finishedAt=FINISHED,
    )


def test_the_history_shows_each_observed_state_what_changed_and_how_long(
    client: httpx.Client,
) -> None:
    _live_through_a_day(client)
    response = _history(client, "i1")
    assert response.status_code == 200, response.text
    history = response.json()
    assert history["instanceId"] == "i1" and history["truncated"] is False
    entries = history["entries"]
    # The PUT that changed nothing is not in it: it changed nothing.
    assert [(e["op"], e["subStatus"], e.get("currentActivity")) for e in entries] == [
        ("create", "Executing", "Intake"),
        ("update", "Suspended", "Review"),
        ("update", "Suspended", "Review"),
        ("update", "Finished", "Review"),
    ]
    assert [e["revision"] for e in entries] == [1, 2, 3, 4]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert "changed" not in entries[0]
    assert entries[1]["changed"] == ["currentActivity", "subStatus"]
    assert entries[2]["changed"] == ["variables"]
    assert entries[3]["changed"] == ["finishedAt", "status", "subStatus"]
    # Durations by the source's own clock, not by when the mirror happened to write.
    assert [e.get("durationMs") for e in entries] == [
        SUSPENDED - STARTED,
        RESUMED - SUSPENDED,
        FINISHED - RESUMED,
        None,
    ]
    assert history["keptDays"] == 7.0
    assert history["keptSince"] <= entries[0]["observedAt"]


def test_the_newest_entries_when_the_history_is_longer_than_asked(
    client: httpx.Client,
) -> None:
    _live_through_a_day(client)
    history = _history(client, "i1", limit=2).json()
    assert history["truncated"] is True
    assert [e["revision"] for e in history["entries"]] == [3, 4]
    assert "changed" not in history["entries"][0], "its predecessor is not in the page"
    assert _history(client, "i1", limit=4).json()["truncated"] is False


def test_a_deleted_instance_keeps_its_history(client: httpx.Client) -> None:
    _instance(client, id="gone", status="Running")
    assert client.delete("/api/workflows/instances/gone").status_code == 200
    assert client.get("/api/workflows/instances/gone").status_code == 404
    entries = _history(client, "gone").json()["entries"]
    assert [e["op"] for e in entries] == ["create", "delete"]


def test_an_unknown_instance_or_a_bad_limit_is_refused(client: httpx.Client) -> None:
    unknown = _history(client, "never-seen")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Instance history not found"}
    _instance(client, id="i2")
    for limit in (0, 5_001):
        refused = _history(client, "i2", limit=limit)
        assert refused.status_code in (400, 422), refused.text
        assert "limit" in refused.json()["error"]
