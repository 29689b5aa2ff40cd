"""Workflow definition endpoints, as a mirror client sees them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

MENTORSHIP = "tamma-autonomous-mentorship"


def rows(elsa: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = elsa.get("/workflow-definitions", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totalCount"] >= len(body["items"])
    items: list[dict[str, Any]] = body["items"]
    return items


def test_without_version_options_every_version_row_is_listed(elsa: httpx.Client) -> None:
    everything = rows(elsa)
    assert len({row["id"] for row in everything}) == len(everything)
    assert everything == rows(elsa, versionOptions="AllVersions")
    per_definition = Counter(row["definitionId"] for row in everything)
    assert len(everything) > len(per_definition), "some definitions have several versions"
    latest = Counter(row["definitionId"] for row in everything if row["isLatest"])
    assert latest == Counter(dict.fromkeys(per_definition, 1)), "exactly one latest each"
    assert elsa.get("/workflow-definitions/query/count").json() == {"count": len(per_definition)}


def test_version_options_select_rows_by_flags(elsa: httpx.Client) -> None:
    everything = rows(elsa)

    def ids(predicate: Any) -> set[str]:
        return {row["id"] for row in everything if predicate(row)}

    def listed(options: str) -> set[str]:
        return {row["id"] for row in rows(elsa, versionOptions=options)}

    assert listed("Latest") == ids(lambda r: r["isLatest"])
    assert listed("Published") == ids(lambda r: r["isPublished"])
    assert listed("Draft") == ids(lambda r: not r["isPublished"])
    assert listed("LatestOrPublished") == ids(lambda r: r["isLatest"] or r["isPublished"])
    assert listed("LatestAndPublished") == ids(lambda r: r["isLatest"] and r["isPublished"])
    assert listed("2") == ids(lambda r: r["version"] == 2)
    drafts = [r for r in everything if r["isLatest"] and not r["isPublished"]]
    assert drafts, "some latest versions are unpublished drafts"


@pytest.mark.parametrize("options", ["latest", "PUBLISHED", "newest", "1.5"])
def test_version_options_are_exact_case_and_anything_else_is_a_500(
    elsa: httpx.Client, options: str
) -> None:
    assert elsa.get("/workflow-definitions", params={"versionOptions": options}).status_code == 500
    path = f"/workflow-definitions/by-definition-id/{MENTORSHIP}"
    assert elsa.get(path, params={"versionOptions": options}).status_code == 500


def test_paging_is_zero_based_and_page_size_is_optional(elsa: httpx.Client) -> None:
    everything = rows(elsa, versionOptions="Latest")
    assert [r["name"] for r in everything] == sorted(r["name"] for r in everything)
    first = rows(elsa, versionOptions="Latest", page=0, pageSize=4)
    second = rows(elsa, versionOptions="Latest", page=1, pageSize=4)
    assert first + second == everything[:8]
    assert rows(elsa, versionOptions="Latest", page=1) == everything, "page alone is ignored"
    body = elsa.get("/workflow-definitions", params={"pageSize": 2, "versionOptions": "Latest"})
    assert body.json()["totalCount"] == len(everything)


def test_order_by_and_default_directions(elsa: httpx.Client) -> None:
    by_created = rows(elsa, orderBy="Created")
    assert [r["createdAt"] for r in by_created] == sorted(
        (r["createdAt"] for r in by_created), reverse=True
    )
    by_version = rows(elsa, orderBy="version")
    assert [r["version"] for r in by_version] == sorted(
        (r["version"] for r in by_version), reverse=True
    )
    ascending = rows(elsa, orderBy="Version", orderDirection="Ascending")
    assert [r["version"] for r in ascending] == sorted(r["version"] for r in ascending)


def test_list_and_items_carry_links_and_no_update_timestamp(elsa: httpx.Client) -> None:
    body = elsa.get("/workflow-definitions", params={"versionOptions": "Latest"}).json()
    assert {"self", "count", "many-by-id", "bulk-publish", "create"} <= {
        link["rel"] for link in body["links"]
    }
    for item in body["items"]:
        assert item["isMaterializerAvailable"] is True
        assert "updatedAt" not in item
        assert all(link["href"].startswith("/workflow-definitions/") for link in item["links"])
        rels = [link["rel"] for link in item["links"]]
        assert rels.count("self") == 2
        assert ("publish" in rels) == (not item["isReadonly"])
    materializers = {item["materializerName"] for item in body["items"]}
    assert materializers == {"Json", "CLR"}


def test_filters_by_ids_search_term_and_is_system(elsa: httpx.Client) -> None:
    everything = rows(elsa)
    wanted = [everything[0]["definitionId"], everything[-1]["definitionId"]]
    by_definition = rows(elsa, definitionIds=wanted)
    assert {r["definitionId"] for r in by_definition} == set(wanted)
    assert by_definition == [r for r in everything if r["definitionId"] in wanted]
    version_ids = [everything[1]["id"], everything[2]["id"]]
    assert {r["id"] for r in rows(elsa, ids=version_ids)} == set(version_ids)
    found = rows(elsa, searchTerm="  AUTONOMOUS mentor ", versionOptions="Latest")
    assert [r["definitionId"] for r in found] == [MENTORSHIP]
    assert rows(elsa, isSystem="true") == []
    assert len(rows(elsa, isSystem="false")) == len(everything)


def test_single_definition_endpoints(elsa: httpx.Client) -> None:
    latest = elsa.get(f"/workflow-definitions/by-definition-id/{MENTORSHIP}").json()
    assert latest == elsa.get(f"/workflow-definitions/{MENTORSHIP}").json()
    assert (latest["version"], latest["isLatest"], latest["isPublished"]) == (3, True, True)
    first = elsa.get(f"/workflow-definitions/{MENTORSHIP}", params={"versionOptions": "1"})
    assert first.json()["version"] == 1
    assert elsa.get(f"/workflow-definitions/by-id/{latest['id']}").json() == latest
    many = elsa.get(
        "/workflow-definitions/many-by-id", params={"ids": [latest["id"], first.json()["id"]]}
    ).json()
    assert many["count"] == 2
    assert {item["id"] for item in many["items"]} == {latest["id"], first.json()["id"]}
    for path in ("/workflow-definitions/nope", "/workflow-definitions/by-id/abc"):
        missing = elsa.get(path)
        assert (missing.status_code, missing.content) == (404, b"")


def test_full_model_has_tamma_activities_and_variables(elsa: httpx.Client) -> None:
    model = elsa.get(f"/workflow-definitions/{MENTORSHIP}").json()
    root = model["root"]
    assert root["type"] == "Elsa.Sequence"
    activity_ids = {activity["id"] for activity in root["activities"]}
    assert {"init-log", "assess-capability", "monitor-progress", "complete-log"} <= activity_ids
    for activity in root["activities"]:
        assert activity["nodeId"] == f"{root['nodeId']}:{activity['id']}"
    variables = {v["name"]: v for v in model["variables"]}
    assert {"currentState", "retryCount", "storyId", "pullRequestNumber"} <= set(variables)
    assert variables["maxRetries"] == {**variables["maxRetries"], "typeName": "Int32", "value": "3"}
    assert "value" not in variables["storyId"], "null fields are omitted"
    for key in ("inputs", "outputs", "outcomes", "customProperties", "options", "links"):
        assert key in model
    flowchart = elsa.get("/workflow-definitions/SingleIssueCycleWorkflow").json()["root"]
    assert flowchart["type"] == "Elsa.Flowchart"
    assert len(flowchart["connections"]) == len(flowchart["activities"]) - 1
