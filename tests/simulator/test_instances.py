"""Workflow instance endpoints: listing, filters, quirks, details, deletes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.simulator.conftest import all_instances

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?\+00:00")
HEX_ID = re.compile(r"[1-9a-f][0-9a-f]{0,15}")


def parse(text: str) -> datetime:
    """ISO text with up to 7 fractional digits (µs precision is enough to compare here)."""
    head, _, fraction = text.removesuffix("+00:00").partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction or '0')[:6].ljust(6, '0')}+00:00")


def ticks(text: str) -> int:
    """Exact 100 ns ticks of an ELSA timestamp, for ordering comparisons."""
    head, _, fraction = text.removesuffix("+00:00").partition(".")
    seconds = int(datetime.fromisoformat(head + "+00:00").timestamp())
    return seconds * 10_000_000 + int((fraction or "0").ljust(7, "0"))


def post(elsa: httpx.Client, body: Mapping[str, object]) -> dict[str, Any]:
    response = elsa.post("/workflow-instances", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_summary_shape_ids_and_timestamps(elsa: httpx.Client) -> None:
    items = all_instances(elsa)
    assert len(items) == 300
    for item in items:
        assert HEX_ID.fullmatch(item["id"])
        assert item["status"] == ("Finished" if "finishedAt" in item else "Running")
        assert None not in item.values(), "nulls are omitted, not sent"
        for key in ("createdAt", "updatedAt", "finishedAt"):
            if key in item:
                assert ISO.fullmatch(item[key]), item[key]
    lengths = {len(item["id"]) for item in items}
    assert 16 in lengths and min(lengths) < 16, "leading zeros are dropped"
    digits = {len(item["updatedAt"].partition(".")[2].removesuffix("+00:00")) for item in items}
    assert {0, 7} <= digits and len(digits) >= 4, "precision varies like real ELSA data"
    assert {i["subStatus"] for i in items} == {
        "Pending", "Executing", "Suspended", "Finished", "Cancelled", "Faulted"
    }  # fmt: skip
    assert any("correlationId" in i for i in items) and any("name" in i for i in items)


def test_paging_is_zero_based_and_page_size_is_optional(elsa: httpx.Client) -> None:
    everything = post(elsa, {})
    assert everything["totalCount"] == len(everything["items"]) == 300
    created = [ticks(i["createdAt"]) for i in everything["items"]]
    assert created == sorted(created, reverse=True), "default: newest first by CreatedAt"
    first = post(elsa, {"page": 0, "pageSize": 40})
    second = post(elsa, {"page": 1, "pageSize": 40})
    assert first["items"] + second["items"] == everything["items"][:80]
    assert first["totalCount"] == 300
    assert post(elsa, {"page": 3})["items"] == everything["items"], "page alone is ignored"
    last = post(elsa, {"page": 7, "pageSize": 40})
    assert last["items"] == everything["items"][280:]


def test_get_and_post_bind_the_same_request_case_insensitively(elsa: httpx.Client) -> None:
    query: dict[str, str | int] = {
        "PAGESIZE": 25,
        "page": 1,
        "orderby": "UpdatedAt",
        "OrderDirection": "Ascending",
    }
    via_get = elsa.get("/workflow-instances", params=query).json()
    via_post = post(elsa, query)
    assert via_get == via_post
    updated = [ticks(i["updatedAt"]) for i in via_post["items"]]
    assert updated == sorted(updated)
    statuses = {"subStatuses": ["suspended", "FAULTED"]}
    got = elsa.get("/workflow-instances", params=statuses).json()
    assert got == post(elsa, statuses)
    assert {i["subStatus"] for i in got["items"]} == {"Suspended", "Faulted"}


def test_order_by_name_defaults_to_ascending_with_nulls_first(elsa: httpx.Client) -> None:
    items = post(elsa, {"orderBy": "Name"})["items"]
    keys = [(1, i["name"]) if "name" in i else (0, "") for i in items]
    assert keys == sorted(keys)
    finished = post(elsa, {"orderBy": "Finished", "orderDirection": "Descending"})["items"]
    assert "finishedAt" in finished[0] and "finishedAt" not in finished[-1]


def test_status_and_property_filters(elsa: httpx.Client) -> None:
    everything = all_instances(elsa)

    def expect(body: dict[str, Any], predicate: Any) -> None:
        listed = {i["id"] for i in all_instances(elsa, **body)}
        assert listed == {i["id"] for i in everything if predicate(i)}, body
        assert listed, body

    expect({"status": "Finished"}, lambda i: i["status"] == "Finished")
    expect({"statuses": ["running"]}, lambda i: i["status"] == "Running")
    expect({"subStatus": "Faulted"}, lambda i: i["subStatus"] == "Faulted")
    expect({"hasIncidents": True}, lambda i: i["incidentCount"] > 0)
    expect({"hasIncidents": False}, lambda i: i["incidentCount"] == 0)
    sample = next(i for i in everything if "correlationId" in i and "name" in i)
    definition, version, correlation = (
        sample["definitionId"],
        sample["version"],
        sample["correlationId"],
    )
    expect({"correlationId": correlation}, lambda i: i.get("correlationId") == correlation)
    needle = sample["name"].split("#")[1].upper()
    expect({"name": needle}, lambda i: needle.lower() in i.get("name", "\0").lower())
    expect({"definitionId": definition}, lambda i: i["definitionId"] == definition)
    expect(
        {"definitionIds": [definition], "version": version},
        lambda i: (i["definitionId"], i["version"]) == (definition, version),
    )
    term = sample["id"][3:9]
    searched = ("id", "definitionVersionId", "definitionId", "correlationId")
    expect({"searchTerm": term}, lambda i: any(term in i.get(key, "") for key in searched))
    assert all_instances(elsa, isSystem=True) == []
    assert all_instances(elsa, status="Finished", subStatus="Pending") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"statuses": ["Running", "Sleeping"]}, "Invalid enum value 'Sleeping'."),
        ({"subStatuses": ["Suspended", "Paused"]}, "Invalid enum value 'Paused'."),
        ({"page": -1, "pageSize": 10}, "Page must be greater than or equal to 1."),
        ({"pageSize": 0}, "Page size must be greater than or equal to 1."),
        (
            {"timestampFilters": [{"column": "updatedAt", "timestamp": "2025-05-05T10:00:00Z"}]},
            "Invalid column 'updatedAt'.",
        ),
        ({"timestampFilters": [{"operator": "Is"}]}, "Column must be specified."),
    ],
)
def test_validation_errors_use_fastendpoints_body(
    elsa: httpx.Client, body: dict[str, Any], message: str
) -> None:
    response = elsa.post("/workflow-instances", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["statusCode"] == 400
    assert error["message"] == "One or more errors occurred!"
    assert [message] in error["errors"].values()


def test_binding_errors_are_400s(elsa: httpx.Client) -> None:
    assert elsa.post("/workflow-instances", json={"pageSize": "ten"}).status_code == 400
    assert elsa.get("/workflow-instances", params={"page": "x"}).status_code == 400
    assert elsa.post("/workflow-instances", json={"orderBy": "Oldest"}).status_code == 400
    bad_time = {"timestampFilters": [{"column": "UpdatedAt", "timestamp": "yesterday"}]}
    assert elsa.post("/workflow-instances", json=bad_time).status_code == 400
    assert elsa.post("/workflow-instances", content=b"{not json").status_code == 400


def test_timestamp_filters_are_anded_and_exact(elsa: httpx.Client) -> None:
    everything = all_instances(elsa)
    pivot = sorted(everything, key=lambda i: ticks(i["updatedAt"]))[150]["updatedAt"]
    low = sorted(everything, key=lambda i: ticks(i["createdAt"]))[60]["createdAt"]

    def listed(*filters: tuple[str, str, str]) -> set[str]:
        entries = [{"column": c, "operator": o, "timestamp": t} for c, o, t in filters]
        body = {"timestampFilters": entries}
        return {i["id"] for i in all_instances(elsa, **body)}

    def expect(column: str, predicate: Any) -> set[str]:
        return {i["id"] for i in everything if column in i and predicate(ticks(i[column]))}

    p = ticks(pivot)
    assert listed(("UpdatedAt", "GreaterThanOrEqual", pivot)) == expect(
        "updatedAt", lambda t: t >= p
    )
    assert listed(("UpdatedAt", "GreaterThan", pivot)) == expect("updatedAt", lambda t: t > p)
    assert listed(("UpdatedAt", "LessThan", pivot)) == expect("updatedAt", lambda t: t < p)
    assert listed(("UpdatedAt", "LessThanOrEqual", pivot)) == expect("updatedAt", lambda t: t <= p)
    assert listed(("UpdatedAt", "Is", pivot)) == expect("updatedAt", lambda t: t == p)
    assert listed(("UpdatedAt", "IsNot", pivot)) == expect("updatedAt", lambda t: t != p)
    assert listed(("FinishedAt", "IsNot", pivot)) == expect("finishedAt", lambda t: t != p), (
        "a null column matches nothing, not even IsNot"
    )
    both = listed(("UpdatedAt", "LessThan", pivot), ("CreatedAt", "GreaterThan", low))
    low_ticks = ticks(low)
    assert both == {
        i["id"]
        for i in everything
        if ticks(i["updatedAt"]) < p and ticks(i["createdAt"]) > low_ticks
    }
    assert both
    window = listed(("UpdatedAt", "GreaterThanOrEqual", low), ("UpdatedAt", "LessThan", pivot))
    assert window == expect("updatedAt", lambda t: low_ticks <= t < p)
    for order in ("UpdatedAt", "Created"):
        body = {
            "orderBy": order,
            "timestampFilters": [
                {"column": "UpdatedAt", "operator": "GreaterThanOrEqual", "timestamp": low},
                {"column": "UpdatedAt", "operator": "LessThan", "timestamp": pivot},
            ],
        }
        assert {i["id"] for i in all_instances(elsa, **body)} == window
    shifted = pivot.replace("+00:00", "+02:00")
    moved = ticks(pivot) - 2 * 3600 * 10_000_000
    assert listed(("UpdatedAt", "GreaterThanOrEqual", shifted)) == expect(
        "updatedAt", lambda t: t >= moved
    )


def test_midnight_timestamps_switch_to_whole_day_semantics(elsa: httpx.Client) -> None:
    everything = all_instances(elsa)
    day = parse(everything[100]["updatedAt"]).date()
    midnight = f"{day.isoformat()}T00:00:00+00:00"
    start = ticks(midnight)
    end = start + 86_400 * 10_000_000

    def listed(operator: str, timestamp: str) -> set[str]:
        entry = {"column": "UpdatedAt", "operator": operator, "timestamp": timestamp}
        body = {"timestampFilters": [entry]}
        return {i["id"] for i in all_instances(elsa, **body)}

    def expect(predicate: Any) -> set[str]:
        return {i["id"] for i in everything if predicate(ticks(i["updatedAt"]))}

    assert listed("Is", midnight) == expect(lambda t: start <= t < end)
    assert listed("Is", midnight), "the whole day matches, not the instant"
    assert listed("IsNot", midnight) == expect(lambda t: not start <= t < end)
    assert listed("GreaterThan", midnight) == expect(lambda t: t > end), "after the end of day"
    assert listed("GreaterThanOrEqual", midnight) == expect(lambda t: t >= start)
    assert listed("LessThan", midnight) == expect(lambda t: t < start)
    assert listed("LessThanOrEqual", midnight) == expect(lambda t: t <= end)
    just_after = f"{day.isoformat()}T00:00:00.0000001+00:00"
    assert listed("GreaterThan", just_after) == expect(lambda t: t > start + 1)
    assert listed("GreaterThan", just_after) != listed("GreaterThan", midnight)
    date_only = listed("Is", day.isoformat())
    assert date_only == listed("Is", midnight)


def test_detail_of_a_suspended_instance_points_at_a_definition_activity(
    elsa: httpx.Client,
) -> None:
    for summary in all_instances(elsa, subStatus="Suspended")[:10]:
        detail = elsa.get(f"/workflow-instances/{summary['id']}").json()
        state = detail["workflowState"]
        for key, value in summary.items():
            assert detail[key] == value, key
        model = elsa.get(f"/workflow-definitions/by-id/{summary['definitionVersionId']}").json()
        activity_ids = {activity["id"] for activity in model["root"]["activities"]}
        (bookmark,) = state["bookmarks"]
        assert bookmark["activityId"] in activity_ids
        assert bookmark["activityNodeId"].endswith(":" + bookmark["activityId"])
        assert (detail["isExecuting"], state["isExecuting"]) == (False, False)
        (driver,) = {v["storageDriverTypeName"] for v in model["variables"]}
        legacy = driver == "Elsa.Workflows.Services.WorkflowStorageDriver, Elsa.Workflows.Core"
        key = "PersistentVariablesDictionary" if legacy else "Variables"
        (properties,) = [c["properties"] for c in state["activityExecutionContexts"][:1]]
        assert list(properties) == [key], "the declared storage driver's key"
        declared = {v["id"] for v in model["variables"]}
        assert set(properties[key]) <= declared, "stored under variable ids"


def test_detail_of_faulted_and_finished_instances(elsa: httpx.Client) -> None:
    faulted = all_instances(elsa, subStatus="Faulted")[0]
    state = elsa.get(f"/workflow-instances/{faulted['id']}").json()["workflowState"]
    assert faulted["incidentCount"] == len(state["incidents"]) >= 1
    incident = state["incidents"][0]
    assert incident["exception"]["message"] == incident["message"]
    assert state["bookmarks"] == []
    # A faulted context is not completed: 3.2+ keeps it and the root context.
    statuses = [c["status"] for c in state["activityExecutionContexts"]]
    assert statuses == ["Running", "Faulted"]
    finished = all_instances(elsa, subStatus="Finished")[0]
    detail = elsa.get(f"/workflow-instances/{finished['id']}").json()
    assert detail["finishedAt"] == detail["updatedAt"] == detail["workflowState"]["finishedAt"]
    (root,) = detail["workflowState"]["activityExecutionContexts"]
    assert root["status"] == "Completed" and root["properties"], "the root keeps the variables"
    missing = elsa.get("/workflow-instances/0123")
    assert (missing.status_code, missing.content) == (404, b"")


def test_variables_execution_state_and_journal(elsa: httpx.Client) -> None:
    mentorship = "tamma-autonomous-mentorship"
    summary = all_instances(elsa, subStatus="Suspended", definitionId=mentorship)[0]
    base = f"/workflow-instances/{summary['id']}"
    variables = elsa.get(f"{base}/variables").json()
    assert variables["count"] == len(variables["items"]) == 15
    by_name = {v["name"]: v.get("value") for v in variables["items"]}
    assert by_name["maxRetries"] == 3 and isinstance(by_name["currentState"], str)
    state = elsa.get(f"{base}/execution-state").json()
    assert state == {k: summary[k] for k in ("status", "subStatus", "updatedAt")}
    journal = elsa.get(f"{base}/journal").json()
    sequences = [record["sequence"] for record in journal["items"]]
    assert sequences == list(range(journal["totalCount"]))
    assert all("nodeId" in record for record in journal["items"])
    assert journal["items"][-1]["eventName"] == "Suspended"
    page = elsa.get(f"{base}/journal", params={"page": 1, "pageSize": 2}).json()
    assert page["items"] == journal["items"][2:4]
    skipped = elsa.get(f"{base}/journal", params={"skip": 3, "take": 1}).json()
    assert skipped["items"] == journal["items"][3:4]
    unknown = elsa.get("/workflow-instances/123/variables")
    assert (unknown.status_code, unknown.json()) == (200, {"items": [], "count": 0})
    no_journal = elsa.get("/workflow-instances/123/journal")
    assert (no_journal.status_code, no_journal.json()) == (200, {"items": [], "totalCount": 0})


def test_deletes(elsa: httpx.Client) -> None:
    first, second, third, *_ = all_instances(elsa, pageSize=5)
    assert elsa.delete(f"/workflow-instances/{first['id']}").status_code == 204
    assert elsa.delete(f"/workflow-instances/{first['id']}").status_code == 404
    assert elsa.get(f"/workflow-instances/{first['id']}").status_code == 404
    body = {"ids": [first["id"], second["id"], third["id"], "feed"]}
    deleted = elsa.post("/bulk-actions/delete/workflow-instances", json=body)
    assert deleted.json() == {"deleted": 2}
    assert post(elsa, {"pageSize": 1})["totalCount"] == 297
    by_definition = {"workflowDefinitionId": "tamma-autonomous-mentorship"}
    count = len(all_instances(elsa, definitionId="tamma-autonomous-mentorship"))
    deleted = elsa.post("/bulk-actions/delete/workflow-instances/by-id", json=by_definition)
    assert deleted.json() == {"deleted": count} and count > 0
    assert all_instances(elsa, definitionId="tamma-autonomous-mentorship") == []
    remaining = post(elsa, {"pageSize": 1})["totalCount"]
    assert remaining == 297 - count
    everything = elsa.post("/bulk-actions/delete/workflow-instances", json={})
    assert everything.json() == {"deleted": remaining}, "an empty filter deletes all, as ELSA"


def test_dates_parse_back(elsa: httpx.Client) -> None:
    item = all_instances(elsa, subStatus="Finished")[0]
    created, finished = parse(item["createdAt"]), parse(item["finishedAt"])
    assert timedelta(0) <= finished - created < timedelta(days=30)
