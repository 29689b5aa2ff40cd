"""ELSA releases: routes, request fields and where the workflow state keeps variables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tamma_sync.simulator import ElsaSimulator, Realism, SimulatorConfig
from tests.simulator.conftest import TIMEOUT
from tests.support.server import serve_in_thread

SYSTEM = "Elsa.Alterations.ExecuteAlterationPlan"
MENTORSHIP = "tamma-autonomous-mentorship"
WORKFLOW_DRIVER = "Elsa.Workflows.Services.WorkflowStorageDriver, Elsa.Workflows.Core"
INSTANCE_DRIVER_3_2 = "Elsa.Workflows.Services.WorkflowInstanceStorageDriver, Elsa.Workflows.Core"
INSTANCE_DRIVER = "Elsa.Workflows.WorkflowInstanceStorageDriver, Elsa.Workflows.Core"
LEGACY_KEY, KEY = "PersistentVariablesDictionary", "Variables"


@contextmanager
def elsa_release(version: str) -> Iterator[tuple[ElsaSimulator, httpx.Client]]:
    """A simulator of that release (system workflows on) served over loopback HTTP."""
    config = SimulatorConfig(
        seed=21,
        instances=400,
        package_version=version,
        realism=Realism(system_workflows=True),
    )
    simulator = ElsaSimulator(config)
    with (
        serve_in_thread(simulator.app) as url,
        httpx.Client(base_url=url + config.prefix, timeout=TIMEOUT) as client,
    ):
        yield simulator, client


def listing(elsa: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """`GET /workflow-instances` (every release has it)."""
    response = elsa.get("/workflow-instances", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def contexts(elsa: httpx.Client, instance_id: str) -> list[dict[str, Any]]:
    detail = elsa.get(f"/workflow-instances/{instance_id}").json()
    found: list[dict[str, Any]] = detail["workflowState"]["activityExecutionContexts"]
    return found


def drivers(elsa: httpx.Client) -> dict[str, set[str]]:
    """definitionId -> the storage drivers its latest version's variables declare."""
    latest = elsa.get("/workflow-definitions", params={"versionOptions": "Latest"}).json()
    result: dict[str, set[str]] = {}
    for row in latest["items"]:
        model = elsa.get(f"/workflow-definitions/by-id/{row['id']}").json()
        result[row["definitionId"]] = {v["storageDriverTypeName"] for v in model["variables"]}
    return result


def one(elsa: httpx.Client, sub_status: str, definition_id: str | None = None) -> str:
    params = {"subStatus": sub_status} | ({"definitionId": definition_id} if definition_id else {})
    rows = [row for row in listing(elsa, **params) if row["definitionId"] != SYSTEM]
    assert rows, (sub_status, definition_id)
    return str(rows[0]["id"])


def test_unknown_releases_are_refused() -> None:
    for text in ("2.15.0", "four", "4.0.0"):
        with pytest.raises(ValueError, match="ELSA"):
            SimulatorConfig(package_version=text)
    assert SimulatorConfig(package_version="3.3.0-rc2").release.at_least(3)


def test_3_0_has_the_get_list_only_and_no_system_workflows() -> None:
    with elsa_release("3.0.0") as (simulator, elsa):
        assert elsa.get("/package/version").json() == {"packageVersion": "3.0.0"}
        refused = elsa.post("/workflow-instances", json={})
        assert (refused.status_code, refused.content) == (405, b"")
        everything = listing(elsa)
        assert len(listing(elsa, isSystem="true")) == len(everything) == 400, "no such filter"
        assert len(listing(elsa, hasIncidents="true")) == 400
        assert SYSTEM not in drivers(elsa), "system workflows arrived in 3.1"
        running = one(elsa, "Suspended")
        for missing in (
            elsa.get(f"/workflow-instances/{running}/variables"),
            elsa.get(f"/workflow-instances/{running}/execution-state"),
            elsa.post(f"/cancel/workflow-instances/{running}"),
        ):
            assert (missing.status_code, missing.content) == (404, b"")
        detail = elsa.get(f"/workflow-instances/{running}").json()
        assert "isSystem" not in detail and "isSystem" not in detail["workflowState"]
        assert set().union(*drivers(elsa).values()) == {WORKFLOW_DRIVER}
        finished = one(elsa, "Finished")
        root, step = contexts(elsa, finished)
        assert (root["status"], step["status"]) == ("Completed", "Completed"), "keeps them all"
        assert list(root["properties"]) == [LEGACY_KEY] and root["properties"][LEGACY_KEY]
        assert simulator.snapshot().instances[finished].variables is not None


def test_3_1_keeps_no_completed_context_so_ended_instances_lose_their_variables() -> None:
    with elsa_release("3.1.0") as (simulator, elsa):
        assert elsa.post("/workflow-instances", json={"pageSize": 1}).status_code == 200
        system = listing(elsa, isSystem="true")
        assert system and {row["definitionId"] for row in system} == {SYSTEM}
        name_filter = listing(elsa, name="no such name")
        assert len(name_filter) == len(listing(elsa)), "the name filter came with 3.3"
        truth = simulator.snapshot().instances
        for sub_status in ("Finished", "Cancelled", "Pending"):
            instance = one(elsa, sub_status)
            assert contexts(elsa, instance) == [], sub_status
            assert truth[instance].variables is None, sub_status
        faulted = one(elsa, "Faulted")
        assert [c["status"] for c in contexts(elsa, faulted)] == ["Running", "Faulted"]
        assert truth[faulted].variables is not None, "a faulted context is not completed"
        running = one(elsa, "Suspended")
        assert elsa.get(f"/workflow-instances/{running}/execution-state").status_code == 404
        assert elsa.get(f"/workflow-instances/{running}/variables").status_code == 404
        cancel = elsa.post(f"/cancel/workflow-instances/{running}")
        assert (cancel.status_code, cancel.content) == (200, b"")
        assert elsa.get(f"/workflow-instances/{running}").json()["subStatus"] == "Cancelled"


@pytest.mark.parametrize(
    ("version", "driver", "key"),
    [
        ("3.2.0", WORKFLOW_DRIVER, LEGACY_KEY),
        ("3.2.1", INSTANCE_DRIVER_3_2, KEY),
        ("3.3.0", INSTANCE_DRIVER, KEY),
        ("3.7.1", INSTANCE_DRIVER, KEY),
    ],
)
def test_variables_live_where_the_release_and_the_declared_driver_put_them(
    version: str, driver: str, key: str
) -> None:
    with elsa_release(version) as (simulator, elsa):
        declared = drivers(elsa)
        legacy: set[str] = set()
        if driver == WORKFLOW_DRIVER:
            assert set().union(*declared.values()) == {WORKFLOW_DRIVER}
        else:
            legacy = {d for d, found in declared.items() if found == {WORKFLOW_DRIVER}}
            assert len(legacy) == 2, "a few definitions still declare the Workflow driver"
            assert set().union(*(declared[d] for d in declared.keys() - legacy)) == {driver}
        for definition_id in (MENTORSHIP, *legacy):
            want = LEGACY_KEY if definition_id in legacy else key
            running = one(elsa, "Suspended", definition_id)
            (root, _) = contexts(elsa, running)
            assert list(root["properties"]) == [want], (definition_id, want)
        finished = one(elsa, "Finished")
        (root,) = contexts(elsa, finished)
        assert root["status"] == "Completed", "3.2+ keeps the root Workflow context"
        state = elsa.get(f"/workflow-instances/{finished}/execution-state")
        assert state.status_code == 200 and state.json()["subStatus"] == "Finished"
        has_route = version >= "3.3"
        answer = elsa.get(f"/workflow-instances/{finished}/variables")
        assert answer.status_code == (200 if has_route else 404)
        assert simulator.snapshot().instances[finished].variables is not None


def test_3_3_variables_route_answers_what_the_reader_returns() -> None:
    with elsa_release("3.3.0") as (simulator, elsa):
        truth = simulator.snapshot().instances
        empty = {"items": [], "count": 0}
        pending = one(elsa, "Pending")
        assert elsa.get(f"/workflow-instances/{pending}/variables").json() == empty
        assert elsa.get("/workflow-instances/feed/variables").json() == empty
        legacy = next(d for d, found in drivers(elsa).items() if found == {WORKFLOW_DRIVER})
        for instance in (one(elsa, "Finished"), one(elsa, "Suspended", legacy)):
            items = elsa.get(f"/workflow-instances/{instance}/variables").json()["items"]
            assert {v["name"]: v.get("value") for v in items} == truth[instance].variables
