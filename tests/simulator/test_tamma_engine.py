"""The demo's simulated Tamma engine reports through the real API."""

from __future__ import annotations

import httpx

from tamma_sync.simulator import SimulatedTammaEngine


async def test_engine_heartbeats_and_reports_tamma_events(server_url: str) -> None:
    engine = SimulatedTammaEngine(server_url, "tamma-demo", step_seconds=5, seed=3)
    try:
        for _ in range(9):  # one full issue-to-PR loop
            await engine.step()
    finally:
        await engine.aclose()
    async with httpx.AsyncClient(base_url=server_url) as http:
        registered = (await http.get("/api/engines/tamma-demo")).json()
        events = (await http.get("/api/engines/tamma-demo/events", params={"pageSize": 200})).json()
    assert (registered["kind"], registered["online"], registered["state"]) == (
        "tamma",
        True,
        "IDLE",
    )
    assert registered["stats"]["issuesProcessed"] == 1
    types = {event["type"] for event in events["data"]}
    assert {"STATE_TRANSITION", "ISSUE_SELECTED", "PR_CREATED", "PR_MERGED"} <= types
    transition = next(e for e in events["data"] if e["type"] == "STATE_TRANSITION")
    assert set(transition["data"]) == {"from", "to"}
