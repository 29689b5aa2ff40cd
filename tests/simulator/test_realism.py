"""Realism: a live, busy ELSA as a client observes it over HTTP.

Late commits, status-free commits, deletions, ties, system workflows, broken details and
the cancel route. Manual commits keep most of these deterministic.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tamma_sync.simulator import LIVE_REALISM, ElsaSimulator, Realism, SimulatorConfig
from tests.simulator.conftest import SEED, all_instances
from tests.simulator.test_instances import post, ticks
from tests.support.mirror import expected_state

MENTORSHIP = "tamma-autonomous-mentorship"
SYSTEM = "Elsa.Alterations.ExecuteAlterationPlan"


def realistic(**behaviours: Any) -> SimulatorConfig:
    return SimulatorConfig(seed=SEED, instances=300, realism=Realism(**behaviours))


def manual(**behaviours: Any) -> pytest.MarkDecorator:
    """Parametrize the `config` fixture with manual commits (and other behaviours)."""
    return pytest.mark.parametrize("config", [realistic(manual_commits=True, **behaviours)])


def since(elsa: httpx.Client, stamp: str, **body: Any) -> list[dict[str, Any]]:
    """A mirror's delta query: `UpdatedAt >= stamp`, oldest change first."""
    filters = [{"column": "UpdatedAt", "operator": "GreaterThanOrEqual", "timestamp": stamp}]
    return all_instances(
        elsa, timestampFilters=filters, orderBy="UpdatedAt", orderDirection="Ascending", **body
    )


def detail(elsa: httpx.Client, instance_id: str) -> dict[str, Any]:
    response = elsa.get(f"/workflow-instances/{instance_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def variables(elsa: httpx.Client, instance_id: str) -> dict[str, Any]:
    items = elsa.get(f"/workflow-instances/{instance_id}/variables").json()["items"]
    return {item["name"]: item.get("value") for item in items}


def test_the_default_config_is_quiet() -> None:
    quiet = SimulatorConfig().realism
    assert quiet == Realism() and not quiet.delays_commits
    assert LIVE_REALISM.commit_lag == timedelta(seconds=1.5) and LIVE_REALISM.ties
    with pytest.raises(ValueError, match="share"):
        Realism(silent_share=0.7, delete_share=0.6)


@manual()
def test_a_later_stamp_can_become_visible_first(
    simulator: ElsaSimulator, elsa: httpx.Client, control: httpx.Client
) -> None:
    (a,) = simulator.create_instances(definition_id=MENTORSHIP)
    (b,) = simulator.create_instances(definition_id=MENTORSHIP)
    assert simulator.pending_commits() == 2 == control.get("/state").json()["pendingCommits"]
    assert elsa.get(f"/workflow-instances/{a}").status_code == 404, "not committed yet"
    assert {a, b}.isdisjoint(i["id"] for i in all_instances(elsa))

    assert control.post("/commits/flush", json={"ids": [b]}).json() == {"flushed": 1}
    stamp_b = detail(elsa, b)["updatedAt"]
    assert [i["id"] for i in since(elsa, stamp_b)] == [b]

    assert simulator.flush_commits() == 1 and simulator.pending_commits() == 0
    created_a = detail(elsa, a)["createdAt"]
    assert ticks(created_a) < ticks(stamp_b), "A was stamped first"
    assert a not in {i["id"] for i in since(elsa, stamp_b)}, "a >= cursor delta misses A"
    by_update = [i["id"] for i in since(elsa, created_a)]
    assert by_update.index(a) < by_update.index(b), "A lands at its stamp's place"
    by_creation = [i["id"] for i in all_instances(elsa, orderBy="Created")]
    assert by_creation.index(b) < by_creation.index(a), "newest first, by createdAt"


@manual()
def test_one_instance_commits_in_order_and_steps_leave_it_alone(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    (instance,) = simulator.create_instances(definition_id=MENTORSHIP)
    assert simulator.progress_instances([instance], to="Executing") == [instance]
    assert simulator.progress_instances([instance], to="Suspended") == [instance]
    report = simulator.step(150)
    assert instance not in report.updated, "ELSA's runner holds an instance mid-commit"
    assert set(report.updated).isdisjoint(report.created)
    assert len(report.updated) == len(set(report.updated)), "one pending commit each"
    assert simulator.pending_commits() == 3 + len(report.created) + len(report.updated)
    assert simulator.flush_commits([instance, "feed"]) == 3
    state = detail(elsa, instance)
    assert state["subStatus"] == "Suspended" and state["createdAt"] < state["updatedAt"]
    simulator.flush_commits()
    assert {i["id"] for i in all_instances(elsa)} >= set(report.created)


# A lag well above one poll's time: a poll that took longer would see every commit at once.
@pytest.mark.parametrize("config", [realistic(commit_lag=timedelta(seconds=1))])
def test_commits_become_visible_after_a_real_time_lag_out_of_order(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    made = [simulator.create_instances()[0] for _ in range(20)]  # stamps in this order
    seen: list[str] = []
    deadline = time.monotonic() + 6
    while len(seen) < len(made) and time.monotonic() < deadline:
        visible = {i["id"] for i in all_instances(elsa)}
        seen += [i for i in made if i in visible and i not in seen]
        time.sleep(0.01)
    assert sorted(seen) == sorted(made) and simulator.pending_commits() == 0
    assert seen != made, "visible in another order than stamped"


@manual()
def test_a_status_free_commit_changes_variables_and_bookmark_not_updated_at(
    simulator: ElsaSimulator, elsa: httpx.Client, control: httpx.Client
) -> None:
    suspended = next(
        i
        for i in all_instances(elsa, subStatus="Suspended", definitionId=MENTORSHIP)
        if detail(elsa, i["id"])["workflowState"]["bookmarks"][0]["activityId"]
        != "merge-and-complete"
    )
    instance = suspended["id"]
    before, values = detail(elsa, instance), variables(elsa, instance)
    assert control.post("/instances/silent", json={"ids": [instance, "feed"]}).json() == {
        "updated": [instance]
    }
    assert detail(elsa, instance) == before, "not visible before its commit"
    assert simulator.flush_commits([instance]) == 1
    after = detail(elsa, instance)
    assert (after["updatedAt"], after["subStatus"]) == (before["updatedAt"], "Suspended")
    assert variables(elsa, instance) != values
    (old_bookmark,) = before["workflowState"]["bookmarks"]
    (new_bookmark,) = after["workflowState"]["bookmarks"]
    assert new_bookmark["activityId"] != old_bookmark["activityId"], "moved to the next wait"
    row = next(i for i in all_instances(elsa) if i["id"] == instance)
    assert row == suspended, "the list row is as it was"
    assert instance not in {i["id"] for i in since(elsa, simulator.now())}, "no delta shows it"
    finished = all_instances(elsa, subStatus="Finished")[0]["id"]
    pending = simulator.create_instances()[0]
    assert simulator.silent_commit([finished, pending]) == [], "only started, running ones"


@pytest.mark.parametrize("config", [realistic(silent_share=1.0)])
def test_silent_steps_keep_every_list_row(simulator: ElsaSimulator, elsa: httpx.Client) -> None:
    rows = all_instances(elsa)
    truth = simulator.snapshot().instances
    report = simulator.step(30)
    assert report.silent and not report.created and not report.updated
    assert all_instances(elsa) == rows
    after = simulator.snapshot().instances
    for instance in report.silent:
        assert after[instance].updated_at == truth[instance].updated_at
        assert after[instance].variables != truth[instance].variables


@pytest.mark.parametrize("config", [realistic(delete_share=0.5)])
def test_churn_deletes_mostly_the_oldest_ended_instances(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    oldest_ended = next(
        i["id"]
        for i in all_instances(elsa, orderBy="Created", orderDirection="Ascending")
        if i["status"] == "Finished"
    )
    totals = [post(elsa, {"pageSize": 1})["totalCount"]]
    deleted: list[str] = []
    for _ in range(4):
        report = simulator.step(25)
        deleted += report.deleted
        totals.append(post(elsa, {"pageSize": 1})["totalCount"])
        assert totals[-1] == totals[-2] + len(set(report.created)) - len(report.deleted)
    assert len(set(totals)) > 1, "totalCount keeps moving"
    assert oldest_ended in deleted
    assert all(elsa.get(f"/workflow-instances/{i}").status_code == 404 for i in deleted)


def distinct_orders(
    elsa: httpx.Client, body: dict[str, Any], times: int = 4
) -> set[tuple[str, ...]]:
    orders: set[tuple[str, ...]] = set()
    rows: set[str] | None = None
    for _ in range(times):
        page = [i["id"] for i in all_instances(elsa, **body)]
        assert rows is None or set(page) == rows, "the same rows"
        rows = set(page)
        orders.add(tuple(page))
    return orders


@pytest.mark.parametrize("config", [realistic(ties=True)])
def test_rows_with_equal_keys_come_in_another_order_each_request(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    batch = simulator.create_instances(12)  # one commit, one stamp
    stamp = detail(elsa, batch[0])["createdAt"]
    for order in ("Created", "UpdatedAt"):
        assert len(distinct_orders(elsa, {"orderBy": order})) > 1, order
        tied = {"orderBy": order, "timestampFilters": _is(stamp)}
        assert len(distinct_orders(elsa, tied)) > 1, order
        window = {"orderBy": order, "pageSize": 5, "page": 1}
        first = post(elsa, {**window, "timestampFilters": _is(stamp)})
        assert first["totalCount"] == 12 and len(first["items"]) == 5
    for order in ("Finished", "Name"):  # NULLs (running; unnamed) tie
        assert len(distinct_orders(elsa, {"orderBy": order})) > 1, order
    report = simulator.step(120)
    stamps = [detail(elsa, i)["createdAt"] for i in report.created]
    assert len(set(stamps)) < len(stamps), "the clock sometimes repeats a stamp"


def _is(stamp: str) -> list[dict[str, str]]:
    return [{"column": "UpdatedAt", "operator": "Is", "timestamp": stamp}]


@pytest.mark.parametrize("config", [realistic(system_workflows=True)])
def test_system_workflows_and_the_is_system_filter(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    listed = elsa.get("/workflow-definitions", params={"isSystem": True}).json()["items"]
    assert [(d["definitionId"], d["materializerName"], d["isReadonly"]) for d in listed] == [
        (SYSTEM, "CLR", True)
    ]
    model = elsa.get(f"/workflow-definitions/by-definition-id/{SYSTEM}").json()
    assert model["isSystem"] is True and model["isPublished"] and model["name"] == SYSTEM
    others = elsa.get("/workflow-definitions", params={"isSystem": False}).json()["items"]
    assert SYSTEM not in {d["definitionId"] for d in others} and len(others) > 12

    simulator.step(200)
    system = {i["id"] for i in all_instances(elsa, isSystem=True)}
    user = {i["id"] for i in all_instances(elsa, isSystem=False)}
    everything = {i["id"] for i in all_instances(elsa)}
    assert system and system | user == everything and not system & user
    assert {i["definitionId"] for i in all_instances(elsa, isSystem=True)} == {SYSTEM}
    assert len(system) < len(everything) / 10, "a small share"
    one = detail(elsa, next(iter(system)))
    assert one["isSystem"] is True and one["workflowState"]["isSystem"] is True
    truth = simulator.snapshot()
    assert truth.definitions[SYSTEM].is_system
    assert {i for i, t in truth.instances.items() if t.is_system} == system
    definitions, instances = expected_state(simulator)
    assert SYSTEM not in definitions and system.isdisjoint(instances)
    definitions, instances = expected_state(simulator, include_system=True)
    assert SYSTEM in definitions and system <= instances.keys()


@pytest.mark.parametrize("config", [realistic(poisoned_details=2)])
def test_poisoned_details_answer_500_for_good(simulator: ElsaSimulator, elsa: httpx.Client) -> None:
    poisoned = simulator.poisoned_ids()
    assert len(poisoned) == 2
    listed = {i["id"]: i for i in all_instances(elsa)}
    assert all(listed[i]["subStatus"] == "Suspended" for i in poisoned)
    simulator.step(400)
    for instance in poisoned:
        base = f"/workflow-instances/{instance}"
        for path in (base, f"{base}/variables", f"{base}/journal", f"{base}/execution-state"):
            response = elsa.get(path)
            assert (response.status_code, response.content) == (500, b""), path
        assert elsa.post(f"/cancel{base}").status_code == 500
        row = next(i for i in all_instances(elsa) if i["id"] == instance)
        assert row == listed[instance], "steps never move it"
        truth = simulator.snapshot().instances[instance]
        assert (truth.variables, truth.current_activity) == (None, None)
    assert simulator.cancel_instances(poisoned) == []
    assert simulator.silent_commit(poisoned) == []
    _, instances = expected_state(simulator)
    assert all("variables" not in instances[i] for i in poisoned)


@manual()
def test_cancel_route_cancels_running_instances_as_a_normal_commit(
    simulator: ElsaSimulator, elsa: httpx.Client, control: httpx.Client
) -> None:
    running = all_instances(elsa, subStatus="Suspended")[0]
    path = f"/cancel/workflow-instances/{running['id']}"
    response = elsa.post(path)
    assert (response.status_code, response.content) == (200, b"")
    assert detail(elsa, running["id"])["subStatus"] == "Suspended", "dispatched, not committed"
    assert simulator.flush_commits() == 1
    cancelled = detail(elsa, running["id"])
    assert (cancelled["status"], cancelled["subStatus"]) == ("Finished", "Cancelled")
    assert ticks(cancelled["updatedAt"]) > ticks(running["updatedAt"])
    assert cancelled["finishedAt"] == cancelled["updatedAt"]
    for ended in (running["id"], "feed"):
        again = elsa.post(f"/cancel/workflow-instances/{ended}")
        assert (again.status_code, again.content) == (200, b"")
    assert simulator.pending_commits() == 0, "unknown and ended ones change nothing"
    other = all_instances(elsa, subStatus="Executing")[0]["id"]
    assert control.post("/instances/cancel", json={"ids": [other]}).json() == {"updated": [other]}
    assert simulator.cancel_instances([other]) == [], "its pending cancellation ended it"
    simulator.flush_commits()
    assert detail(elsa, other)["subStatus"] == "Cancelled"
