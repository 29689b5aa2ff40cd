"""State over time: determinism, lifecycle steps, draft rules, deletion cascade, snapshot."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from tamma_sync.simulator import ElsaSimulator, SimulatorConfig, SubStatus
from tamma_sync.simulator.clock import format_ticks
from tests.simulator.conftest import all_instances
from tests.simulator.test_instances import ticks

MENTORSHIP = "tamma-autonomous-mentorship"


def drive(simulator: ElsaSimulator) -> None:
    """A fixed sequence of every kind of mutation."""
    simulator.step(40)
    ids = simulator.create_instances(3, definition_id=MENTORSHIP)
    simulator.progress_instances(ids[:2])
    simulator.progress_instances(ids[2:], to="Faulted")
    simulator.delete_instances(simulator.instance_ids()[:5])
    simulator.save_draft(MENTORSHIP)
    simulator.save_draft(MENTORSHIP)
    simulator.publish(MENTORSHIP)
    simulator.delete_definition("SingleIssueCycleWorkflow")
    simulator.step(10)


def test_same_seed_and_same_calls_give_the_same_state() -> None:
    config = SimulatorConfig(seed=5, instances=150)
    first, second = ElsaSimulator(config), ElsaSimulator(config)
    assert first.snapshot() == second.snapshot()
    drive(first)
    drive(second)
    assert first.snapshot() == second.snapshot()
    other = ElsaSimulator(SimulatorConfig(seed=6, instances=150))
    assert other.snapshot().instances.keys().isdisjoint(first.snapshot().instances.keys())


def test_steps_move_instances_forward_in_time(simulator: ElsaSimulator, elsa: httpx.Client) -> None:
    before = {i["id"]: i for i in all_instances(elsa)}
    cursor = max(ticks(i["updatedAt"]) for i in before.values())
    report = simulator.step(60)
    assert report.created and report.updated
    after = {i["id"]: i for i in all_instances(elsa)}
    assert set(report.created) == after.keys() - before.keys()
    for instance_id in set(report.updated) - set(report.created):
        old, new = before[instance_id], after[instance_id]
        assert ticks(new["updatedAt"]) > cursor
        assert new["createdAt"] == old["createdAt"]
        assert (old["subStatus"], new["subStatus"]) != ("Finished", "Finished")
    changed = {i for i in after if i not in before or after[i] != before[i]}
    assert changed == set(report.created) | set(report.updated)
    # A mirror's delta query sees exactly what changed, oldest change first.
    delta = elsa.post(
        "/workflow-instances",
        json={
            "timestampFilters": [
                {
                    "column": "UpdatedAt",
                    "operator": "GreaterThan",
                    "timestamp": format_ticks(cursor),
                }
            ],
            "orderBy": "UpdatedAt",
            "orderDirection": "Ascending",
        },
    ).json()
    assert {i["id"] for i in delta["items"]} == changed
    stamps = [ticks(i["updatedAt"]) for i in delta["items"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_explicit_lifecycle_changes_state_bookmarks_and_variables(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    (instance_id,) = simulator.create_instances(definition_id=MENTORSHIP)
    path = f"/workflow-instances/{instance_id}"

    def look() -> tuple[dict[str, Any], dict[str, Any]]:
        detail = elsa.get(path).json()
        variables = {
            v["name"]: v.get("value") for v in elsa.get(f"{path}/variables").json()["items"]
        }
        return detail, variables

    detail, variables = look()
    assert (detail["subStatus"], variables) == ("Pending", {}), "no root context yet"
    assert detail["createdAt"] == detail["updatedAt"]
    seen_activities: list[str] = []
    seen_states: set[str] = set()
    stamps = [ticks(detail["updatedAt"])]
    while detail["status"] == "Running":
        simulator.progress_instances([instance_id], to="Suspended")
        detail, variables = look()
        (bookmark,) = detail["workflowState"]["bookmarks"]
        seen_activities.append(bookmark["activityId"])
        seen_states.add(variables["currentState"])
        stamps.append(ticks(detail["updatedAt"]))
        simulator.progress_instances([instance_id], to="Executing")
        detail, variables = look()
        assert detail["workflowState"]["bookmarks"] == []
        stamps.append(ticks(detail["updatedAt"]))
        if len(seen_activities) == 5:
            simulator.progress_instances([instance_id], to="Finished")
            detail, variables = look()
    assert seen_activities == [
        "gather-initial-context",
        "assess-capability",
        "monitor-progress",
        "monitor-review",
        "merge-and-complete",
    ]
    assert len(seen_states) >= 4
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert detail["subStatus"] == "Finished" and detail["finishedAt"] == detail["updatedAt"]
    assert variables["currentState"] == "COMPLETED"
    assert simulator.progress_instances([instance_id]) == [], "ended instances stay ended"


def test_batch_calls_share_one_timestamp(simulator: ElsaSimulator) -> None:
    ids = simulator.create_instances(4)
    truth = simulator.snapshot().instances
    assert len({truth[i].created_at for i in ids}) == 1
    changed = simulator.progress_instances(ids, to=SubStatus.Executing)
    truth = simulator.snapshot().instances
    assert changed == ids and len({truth[i].updated_at for i in ids}) == 1


def test_random_steps_raise_retries_and_faults(simulator: ElsaSimulator) -> None:
    simulator.step(3000)
    truth = simulator.snapshot().instances.values()
    assert any(i.variables and i.variables["retryCount"] for i in truth)
    assert sum(i.sub_status == "Faulted" for i in truth) > 0
    for instance in truth:
        assert (instance.incident_count > 0) == (instance.sub_status == "Faulted")
        assert (instance.current_activity is not None) == (instance.sub_status == "Suspended")


def versions(elsa: httpx.Client, definition_id: str) -> list[dict[str, Any]]:
    params = {"definitionIds": definition_id, "orderBy": "Version", "orderDirection": "Ascending"}
    items: list[dict[str, Any]] = elsa.get("/workflow-definitions", params=params).json()["items"]
    return items


def test_draft_saves_edit_in_place_or_add_a_version(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    before = versions(elsa, MENTORSHIP)
    assert before[-1]["isPublished"] and before[-1]["isLatest"]
    saved = simulator.save_draft(MENTORSHIP)
    assert not saved.in_place and saved.version == 4
    new = versions(elsa, MENTORSHIP)
    assert new[:-1] == [{**row, "isLatest": False} for row in before]
    draft = new[-1]
    assert (draft["id"], draft["version"], draft["isPublished"]) == (saved.version_id, 4, False)
    assert ticks(draft["createdAt"]) > ticks(before[-1]["createdAt"])
    model = elsa.get(f"/workflow-definitions/by-id/{draft['id']}").json()

    edited = simulator.save_draft(MENTORSHIP)
    assert edited.in_place and edited.version_id == draft["id"]
    assert versions(elsa, MENTORSHIP) == new, "an in-place edit changes no listed field"
    changed = elsa.get(f"/workflow-definitions/by-id/{draft['id']}").json()
    assert changed["root"] != model["root"] and changed["variables"] != model["variables"]
    assert changed["createdAt"] == model["createdAt"]

    assert simulator.publish(MENTORSHIP) == draft["id"]
    published = versions(elsa, MENTORSHIP)
    assert [row["isPublished"] for row in published] == [False, False, False, True]
    assert [row["createdAt"] for row in published] == [row["createdAt"] for row in new]
    created = simulator.create_instances(definition_id=MENTORSHIP)
    assert elsa.get(f"/workflow-instances/{created[0]}").json()["version"] == 4
    with pytest.raises(ValueError, match="read-only"):
        simulator.save_draft("IssueSelectionWorkflow")


def test_deleting_a_definition_cascades_to_its_instances(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    doomed = all_instances(elsa, definitionId=MENTORSHIP)
    rows = versions(elsa, MENTORSHIP)
    total = len(all_instances(elsa))
    assert doomed and elsa.delete(f"/workflow-definitions/{MENTORSHIP}").status_code == 204
    assert elsa.delete(f"/workflow-definitions/{MENTORSHIP}").status_code == 404
    assert versions(elsa, MENTORSHIP) == []
    assert elsa.get(f"/workflow-definitions/by-id/{rows[0]['id']}").status_code == 404
    assert elsa.get(f"/workflow-instances/{doomed[0]['id']}").status_code == 404
    assert len(all_instances(elsa)) == total - len(doomed)
    assert MENTORSHIP not in simulator.snapshot().definitions

    listing = elsa.get("/workflow-definitions").json()["items"]
    counts = Counter(row["definitionId"] for row in listing)
    other = next(d for d, n in counts.items() if n > 1 and all_instances(elsa, definitionId=d))
    rows = versions(elsa, other)
    oldest = next(r for r in rows if all_instances(elsa, definitionId=other, version=r["version"]))
    path = f"/workflow-definition-versions/{oldest['id']}"
    assert elsa.delete(path).status_code == 204
    assert elsa.delete(path).status_code == 404
    assert all_instances(elsa, definitionId=other, version=oldest["version"]) == []
    assert [row["id"] for row in versions(elsa, other)] == [
        row["id"] for row in rows if row is not oldest
    ]


def test_deleting_the_latest_version_makes_the_previous_one_latest(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    saved = simulator.save_draft(MENTORSHIP)
    assert simulator.delete_definition_version(saved.version_id) == 0
    rows = versions(elsa, MENTORSHIP)
    assert [row["isLatest"] for row in rows] == [False, False, True]


def test_snapshot_is_what_the_api_serves(simulator: ElsaSimulator, elsa: httpx.Client) -> None:
    simulator.step(100)
    simulator.save_draft("TddWorkflow")
    snapshot = simulator.snapshot()
    latest = elsa.get("/workflow-definitions", params={"versionOptions": "Latest"}).json()
    assert {row["definitionId"] for row in latest["items"]} == snapshot.definitions.keys()
    for row in latest["items"]:
        truth = snapshot.definitions[row["definitionId"]]
        model = elsa.get(f"/workflow-definitions/by-id/{row['id']}").json()
        assert (truth.version_id, truth.version, truth.name) == (
            row["id"],
            row["version"],
            row["name"],
        )
        assert (truth.is_published, truth.is_latest) == (row["isPublished"], row["isLatest"])
        assert truth.description == row.get("description")
        assert truth.activities == model["root"]["activities"]
        assert truth.variables == model["variables"]
    summaries = all_instances(elsa)
    assert len(summaries) == snapshot.instance_count == len(snapshot.instances)
    for summary in summaries[:60]:
        truth_row = snapshot.instances[summary["id"]]
        wire = truth_row.to_wire()
        assert {k: v for k, v in wire.items() if k in summary} == summary
        details = {"currentActivity", "variables", "isSystem"}
        assert all(wire[k] is None for k in wire.keys() - summary.keys() - details)
        assert wire["isSystem"] is False
        detail = elsa.get(f"/workflow-instances/{summary['id']}").json()
        bookmarks = detail["workflowState"]["bookmarks"]
        assert truth_row.current_activity == (bookmarks[0]["activityId"] if bookmarks else None)
        variables = elsa.get(f"/workflow-instances/{summary['id']}/variables").json()["items"]
        if truth_row.variables is None:
            assert (summary["subStatus"], variables) == ("Pending", [])
        else:
            assert truth_row.variables == {v["name"]: v.get("value") for v in variables}


def test_snapshot_windows_and_skips_details(simulator: ElsaSimulator) -> None:
    full = simulator.snapshot()
    window = simulator.snapshot(offset=10, limit=5, details=False)
    assert list(window.instances) == list(full.instances)[10:15]
    assert window.instance_count == full.instance_count
    assert all(i.variables is None for i in window.instances.values())
