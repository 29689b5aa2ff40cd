"""A simulated Tamma engine for the demo: it reports to tamma-sync over HTTP, as a real one.

It walks Tamma's issue-to-PR loop (an issue selected, analysed, planned, implemented, its PR
merged): every step is a
heartbeat (`PUT /api/engines/{id}` with state and stats) and a batch of events in Tamma's
shape (`POST /api/engines/{id}/events`), e.g. STATE_TRANSITION {from, to}, PR_CREATED
{prNumber, url}.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tamma_sync.models import TAMMA_ENGINE_STATES

log = logging.getLogger(__name__)

#: The loop a Tamma engine runs for each issue: its states in order, ERROR aside.
CYCLE = (*(state for state in TAMMA_ENGINE_STATES if state not in ("IDLE", "ERROR")), "IDLE")
ISSUE_TITLES = (
    "Retry webhook deliveries with backoff",
    "Paginate the audit log endpoint",
    "Fix flaky test in the billing module",
    "Add dark mode to the settings page",
    "Upgrade the ORM and drop deprecated calls",
)


class SimulatedTammaEngine:
    """One engine walking issue after issue, reporting each step to a tamma-sync server.

    `new_key`, if given, makes a key for the engine when the server answers 401 (API keys
    have come into use); the report is then sent again with it."""

    def __init__(
        self,
        base_url: str,
        engine_id: str = "tamma-demo",
        *,
        api_key: str | None = None,
        new_key: Callable[[], Awaitable[str]] | None = None,
        step_seconds: float = 3.0,
        seed: int = 1,
        repository: str = "meywd/tamma",
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10)
        self._new_key = new_key
        self._engine_id = engine_id
        self._step_seconds = step_seconds
        self._random = random.Random(seed)
        self._repository = repository
        self._state = "IDLE"
        self._issue = 0
        self._pr = 0
        self._stats: dict[str, Any] = {
            "issuesProcessed": 0,
            "totalCostUsd": 0.0,
            "startedAt": int(time.time() * 1000),
        }

    async def run(self) -> None:
        """Report forever (until cancelled); a server that is away is retried next step."""
        try:
            await self._server_up()
            while True:
                try:
                    await self.step()
                except httpx.HTTPError as exc:
                    log.warning("simulated engine: cannot report: %s", exc)
                await asyncio.sleep(self._step_seconds)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _server_up(self) -> None:
        """Wait for the server to answer (the demo starts it at the same time)."""
        while True:
            try:
                if (await self._http.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)

    async def step(self) -> None:
        """Move to the next state, heartbeat, and report what happened on the way."""
        previous = self._state
        self._state = CYCLE[(CYCLE.index(previous) + 1) % len(CYCLE)]
        events = [self._event("STATE_TRANSITION", {"from": previous, "to": self._state})]
        events += self._events_entering(self._state)
        self._stats["totalCostUsd"] = round(
            self._stats["totalCostUsd"] + self._random.uniform(0.01, 0.2), 2
        )
        heartbeat = {
            "name": f"Tamma engine ({self._repository})",
            "kind": "tamma",
            "version": "0.6.0",
            "state": self._state,
            "stats": self._stats,
            "heartbeatIntervalSeconds": self._step_seconds,
        }
        await self._send("PUT", f"/api/engines/{self._engine_id}", heartbeat)
        await self._send("POST", f"/api/engines/{self._engine_id}/events", events)

    async def _send(self, method: str, path: str, body: object) -> None:
        response = await self._http.request(method, path, json=body)
        if response.status_code == 401 and self._new_key is not None:
            self._http.headers["Authorization"] = f"Bearer {await self._new_key()}"
            log.info("simulated engine: API keys are in use; reporting with a key of its own")
            response = await self._http.request(method, path, json=body)
        response.raise_for_status()

    def _events_entering(self, state: str) -> list[dict[str, Any]]:
        url = f"https://github.com/{self._repository}"
        if state == "SELECTING_ISSUE":
            self._issue = self._random.randint(100, 999)
            title = self._random.choice(ISSUE_TITLES)
            return [
                self._event(
                    "ISSUE_SELECTED", {"title": title, "url": f"{url}/issues/{self._issue}"}
                )
            ]
        if state == "ANALYZING":
            return [
                self._event(
                    "ISSUE_ANALYZED",
                    {"contextLength": self._random.randint(2_000, 40_000), "relatedIssues": []},
                )
            ]
        if state == "PLANNING":
            return [self._event("PLAN_GENERATED", {"steps": self._random.randint(3, 9)})]
        if state == "IMPLEMENTING":
            return [
                self._event("PLAN_APPROVED", {}),
                self._event("BRANCH_CREATED", {"branch": f"tamma/issue-{self._issue}"}),
                self._event("IMPLEMENTATION_STARTED", {}),
            ]
        if state == "CREATING_PR":
            self._pr += 1
            return [
                self._event("IMPLEMENTATION_COMPLETED", {}),
                self._event("PR_CREATED", {"prNumber": self._pr, "url": f"{url}/pull/{self._pr}"}),
            ]
        if state == "MONITORING":
            passed = self._random.random() < 0.85
            return [
                self._event("CI_CHECK_STARTED", {}),
                self._event("CI_CHECK_PASSED" if passed else "CI_CHECK_FAILED", {}),
            ]
        if state == "MERGING":
            self._stats["issuesProcessed"] += 1
            return [
                self._event(
                    "PR_MERGED",
                    {
                        "prNumber": self._pr,
                        "sha": uuid.UUID(int=self._random.getrandbits(128)).hex[:12],
                    },
                ),
                self._event("ISSUE_CLOSED", {"prNumber": self._pr}),
                self._event("BRANCH_DELETED", {"branch": f"tamma/issue-{self._issue}"}),
            ]
        return []

    def _event(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(uuid.UUID(int=self._random.getrandbits(128), version=4)),
            "type": event_type,
            "timestamp": int(time.time() * 1000),
            "issueNumber": self._issue or None,
            "data": data,
        }
