"""Reaching ELSA for one instance. Cancel: the instance is cancelled there, read back and
mirrored, and the next cycles keep it cancelled; instances that did not come from ELSA
keep the original API's mirror-only cancel. The execution journal: read from the
instance's source on request, page by page."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tamma_sync.api import create_app
from tamma_sync.models import DEFAULT_TENANT_ID
from tamma_sync.settings import Settings
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, Realism, SimulatorConfig
from tamma_sync.store import Store
from tamma_sync.sync import SyncService
from tests.support.server import serve_in_thread
from tests.sync.conftest import PAGE_SIZE

T = DEFAULT_TENANT_ID


@contextmanager
def serving(database_url: str, tmp_path: Path, sim: ElsaSimulator) -> Iterator[httpx.Client]:
    """tamma-sync syncing the simulator every 0.1 s, once its first cycle is done."""
    with serve_in_thread(sim.app) as elsa_url:
        settings = Settings(
            database_url=database_url,
            data_dir=tmp_path,
            elsa_url=elsa_url,
            elsa_api_key=ADMIN_API_KEY,
            poll_interval=0.1,
            sync_page_size=PAGE_SIZE,
        )
        with (
            serve_in_thread(create_app(settings)) as url,
            httpx.Client(base_url=url, timeout=15) as http,
        ):
            _wait(lambda: http.get("/api/workflows/instances").json()["total"] > 0)
            yield http


def _wait(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _with(sim: ElsaSimulator, sub_status: str) -> str:
    return next(t.id for t in sim.snapshot().instances.values() if t.sub_status == sub_status)


def test_cancel_goes_to_elsa_and_the_mirror_follows(database_url: str, tmp_path: Path) -> None:
    realism = Realism(commit_lag=timedelta(milliseconds=300))
    sim = ElsaSimulator(SimulatorConfig(seed=81, instances=120, realism=realism))
    sim.flush_commits()
    with serving(database_url, tmp_path, sim) as http:
        running = _with(sim, "Suspended")
        answer = http.post(f"/api/workflows/instances/{running}/cancel")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["id"], body["status"], body["subStatus"]) == (running, "Finished", "Cancelled")
        assert "message" not in body
        assert sim.snapshot().instances[running].sub_status == "Cancelled", "cancelled in ELSA"
        time.sleep(0.5)  # several cycles later, the mirror still says so
        assert http.get(f"/api/workflows/instances/{running}").json()["subStatus"] == "Cancelled"

        again = http.post(f"/api/workflows/instances/{running}/cancel")
        assert (again.status_code, again.json()["message"]) == (200, "Instance already cancelled")

        finished = _with(sim, "Finished")
        refused = http.post(f"/api/workflows/instances/{finished}/cancel")
        assert refused.status_code == 409
        assert "already ended" in refused.json()["error"]

        local = http.post(
            "/api/workflows/instances",
            json={"id": "local-1", "definitionId": "d", "status": "running"},
        )
        assert local.status_code == 201
        marked = http.post("/api/workflows/instances/local-1/cancel").json()
        assert (marked["status"], marked["subStatus"]) == ("cancelled", "Cancelled")


def test_elsa_without_a_cancel_route_is_a_clear_502(database_url: str, tmp_path: Path) -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=82, instances=60, package_version="3.0.0"))
    with serving(database_url, tmp_path, sim) as http:
        running = _with(sim, "Suspended")
        answer = http.post(f"/api/workflows/instances/{running}/cancel")
        assert answer.status_code == 502
        assert "3.1" in answer.json()["error"]
        assert sim.snapshot().instances[running].sub_status == "Suspended"


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    """Commits wait for the test to let them through."""
    return SimulatorConfig(seed=83, instances=80, realism=Realism(manual_commits=True))


async def test_a_cancel_elsa_has_not_finished_yet_is_reported_as_such(
    store: Store, simulator: ElsaSimulator, service: SyncService
) -> None:
    simulator.flush_commits()
    await service.run_cycle()
    running = _with(simulator, "Suspended")
    assert await service.cancel(running, wait=0.2) is False, "ELSA has not committed it yet"
    mirrored = await store.get_instance(T, running)
    assert mirrored is not None and mirrored.sub_status == "Suspended"
    simulator.flush_commits()
    await service.run_cycle()
    mirrored = await store.get_instance(T, running)
    assert mirrored is not None and mirrored.sub_status == "Cancelled"


def test_the_journal_is_read_from_the_instances_elsa_page_by_page(
    database_url: str, tmp_path: Path
) -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=84, instances=60))
    with serving(database_url, tmp_path, sim) as http:
        instance = _with(sim, "Finished")
        path = f"/api/workflows/instances/{instance}/journal"
        whole = http.get(path).json()
        elsa = sim.instance_journal(instance, 0, 1_000)
        records = elsa["items"]
        assert isinstance(records, list)
        assert (whole["instanceId"], whole["sourceId"]) == (instance, "elsa")
        assert whole["total"] == elsa["totalCount"] == len(whole["entries"]) > 4
        events = [(e["sequence"], e["event"], e.get("activityId")) for e in whole["entries"]]
        assert events == [(r["sequence"], r["eventName"], r["activityId"]) for r in records], (
            "ELSA's events, in its order"
        )
        assert whole["entries"][-1]["event"] == "Completed"
        assert all(isinstance(e["at"], int) for e in whole["entries"])

        second = http.get(path, params={"page": 1, "pageSize": 2}).json()
        assert (second["page"], second["pageSize"], second["total"]) == (1, 2, whole["total"])
        assert second["entries"] == whole["entries"][2:4]

        assert http.get(path, params={"pageSize": 0}).status_code == 400
        assert http.get("/api/workflows/instances/nope/journal").status_code == 404
        local = {"id": "local-1", "definitionId": "d", "status": "running"}
        assert http.post("/api/workflows/instances", json=local).status_code == 201
        pushed = http.get("/api/workflows/instances/local-1/journal")
        assert pushed.status_code == 409
        assert "did not come from an ELSA source" in pushed.json()["error"]

        sim.faults.inject("unavailable", path="/journal")
        down = http.get(path)
        assert down.status_code == 503, down.text
        assert "unavailable" in down.json()["error"]
