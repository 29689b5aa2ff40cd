"""The instance explorer's filters (sourceId, createdSince/createdBefore, updatedBefore,
idPrefix, currentActivity, statusText) over real HTTP, on SQLite and PostgreSQL: the same
rows, totals and refusals."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tamma_sync.models import MAX_EPOCH_MS

LIST = "/api/workflows/instances"

#: (id, definitionId, sourceId, subStatus, createdAt, updatedAt). The ids try what a prefix
#: match gets wrong: LIKE's wildcards and escape character, letter case, and characters
#: beyond one UTF-16 unit.
EXPLORER = [
    ("ord-1", "wf", "elsa-a", "Executing", 100, 1_000),
    ("ord-2", "wf", "elsa-b", "Finished", 200, 900),
    ("ORD-3", "other", "elsa-a", "Executing", 300, 800),
    ("ord_x", "wf", None, "Suspended", 400, 700),
    ("ordAx", "wf", "elsa-a", "Faulted", 500, 600),
    ("50%-off", "other", "elsa-b", "Finished", 600, 500),
    ("50x-off", "wf", "elsa-a", "Executing", 700, 400),
    ("back\\slash", "wf", "elsa-a", "Executing", 800, 300),
    ("backXslash", "wf", "elsa-b", "Cancelled", 900, 200),
    ("ünï-1", "other", None, "Pending", 1_000, 100),
    ("ÜNÏ-2", "other", None, "Pending", 1_100, 50),
    ("🙂-1", "wf", "elsa-a", "Pending", 1_200, 10),
]


def post(client: httpx.Client, instance_id: str, **fields: Any) -> None:
    body = {"id": instance_id, "definitionId": "wf", "status": "Running", **fields}
    response = client.post(LIST, json=body)
    assert response.status_code == 201, response.text


@pytest.fixture
def explorer(client: httpx.Client) -> httpx.Client:
    for instance_id, definition, source, sub_status, created, updated in EXPLORER:
        fields = {"definitionId": definition, "subStatus": sub_status, "sourceId": source}
        post(client, instance_id, **fields, createdAt=created, updatedAt=updated)
    # A deleted instance matches most filters below, and must never be listed or counted.
    post(client, "ord-deleted", sourceId="elsa-a", createdAt=150, updatedAt=950)
    assert client.delete(f"{LIST}/ord-deleted").status_code == 200
    return client


def ids(client: httpx.Client, **params: Any) -> list[str]:
    """The ids listed (all on one page here), checked against the total."""
    response = client.get(LIST, params={"pageSize": 200, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    found = [item["id"] for item in body["data"]]
    assert body["total"] == len(found), params
    return found


def test_source_id_lists_only_that_sources_instances(explorer: httpx.Client) -> None:
    assert ids(explorer, sourceId="elsa-b") == ["ord-2", "50%-off", "backXslash"]
    assert ids(explorer, sourceId="elsa-a", definitionId="other") == ["ORD-3"]
    assert ids(explorer, sourceId="elsa-a", status="Finished") == ["ordAx"]
    assert ids(explorer, sourceId="elsa-a", subStatus="Executing,Pending") == [
        "ord-1",
        "ORD-3",
        "50x-off",
        "back\\slash",
        "🙂-1",
    ]
    assert ids(explorer, sourceId="elsa-c") == []
    assert ids(explorer, sourceId="ELSA-A") == []
    assert len(ids(explorer, sourceId="")) == len(EXPLORER)  # empty: no filter


def test_created_and_updated_bounds(explorer: httpx.Client) -> None:
    assert ids(explorer, createdSince=1_000) == ["ünï-1", "ÜNÏ-2", "🙂-1"]
    assert ids(explorer, createdBefore=300) == ["ord-1", "ord-2"]
    assert ids(explorer, createdSince=300, createdBefore=600) == ["ORD-3", "ord_x", "ordAx"]
    assert ids(explorer, createdSince=600, createdBefore=600) == []
    assert ids(explorer, createdSince=900, createdBefore=100) == []
    assert ids(explorer, updatedBefore=100) == ["ÜNÏ-2", "🙂-1"]
    assert ids(explorer, updatedSince=300, updatedBefore=600) == [
        "50%-off",
        "50x-off",
        "back\\slash",
    ]
    assert ids(explorer, createdSince=0, createdBefore=MAX_EPOCH_MS) == [i[0] for i in EXPLORER]
    assert ids(explorer, updatedBefore=0) == []


def test_the_new_filters_combine_with_each_other_and_the_old_ones(
    explorer: httpx.Client,
) -> None:
    assert ids(
        explorer, sourceId="elsa-a", createdSince=200, updatedBefore=500, definitionId="wf"
    ) == ["50x-off", "back\\slash", "🙂-1"]
    assert ids(explorer, idPrefix="ord", sourceId="elsa-a", createdBefore=500) == ["ord-1"]
    assert ids(explorer, idPrefix="ord", status="Running", updatedSince=700) == ["ord-1", "ord_x"]
    assert ids(explorer, idPrefix="ord", orderBy="updatedAt", updatedBefore=1_000) == [
        "ord-2",
        "ord_x",
        "ordAx",
    ]


#: A database that orders text as people read it ("ord" < "ORD-3" < "ord-1") as well.
ANY_COLLATION = pytest.mark.parametrize(
    "database_url", ["sqlite", "postgresql", "postgresql-en-US"], indirect=True
)


@ANY_COLLATION
def test_id_prefix_is_literal_and_case_sensitive(explorer: httpx.Client) -> None:
    assert ids(explorer, idPrefix="ord") == ["ord-1", "ord-2", "ord_x", "ordAx"]
    assert ids(explorer, idPrefix="ORD") == ["ORD-3"]
    assert ids(explorer, idPrefix="Ord") == []
    assert ids(explorer, idPrefix="ord_") == ["ord_x"]  # "_" is no single-character wildcard
    assert ids(explorer, idPrefix="50%") == ["50%-off"]  # "%" is no wildcard
    assert ids(explorer, idPrefix="%") == []
    assert ids(explorer, idPrefix="back\\") == ["back\\slash"]  # nor is "\" an escape
    assert ids(explorer, idPrefix="ün") == ["ünï-1"]
    assert ids(explorer, idPrefix="ÜN") == ["ÜNÏ-2"]
    assert ids(explorer, idPrefix="🙂") == ["🙂-1"]
    assert ids(explorer, idPrefix="🙂-1") == ["🙂-1"]
    assert ids(explorer, idPrefix="ord-1") == ["ord-1"]
    assert ids(explorer, idPrefix="ord-1x") == []
    assert ids(explorer, idPrefix="x" * 255) == []
    assert len(ids(explorer, idPrefix="")) == len(EXPLORER)  # empty: no filter


@ANY_COLLATION
def test_ties_are_broken_by_the_ids_bytes_on_every_database(client: httpx.Client) -> None:
    """Instances of one time are listed in the ids' byte order, whatever the database's
    collation, and keyset pages walk the same order."""
    tied = ["b", "é", "A-1", "a", "B", "Z"]
    for instance_id in tied:
        post(client, instance_id, createdAt=100, updatedAt=100)
    in_byte_order = sorted(tied, key=lambda i: i.encode())
    assert in_byte_order == ["A-1", "B", "Z", "a", "b", "é"]
    assert ids(client) == in_byte_order
    seen: list[str] = []
    cursor = None
    for _ in range(len(tied)):
        page = client.get(LIST, params={"pageSize": 2} | ({"cursor": cursor} if cursor else {}))
        seen += [item["id"] for item in page.json()["data"]]
        cursor = page.json().get("nextCursor")
        if cursor is None:
            break
    assert seen == in_byte_order


def test_offset_pages_and_totals_follow_the_filters(explorer: httpx.Client) -> None:
    params: dict[str, Any] = {"sourceId": "elsa-a", "createdSince": 100, "pageSize": 2}
    pages = [explorer.get(LIST, params={**params, "page": n}).json() for n in (1, 2, 3, 4)]
    assert [[item["id"] for item in page["data"]] for page in pages] == [
        ["ord-1", "ORD-3"],
        ["ordAx", "50x-off"],
        ["back\\slash", "🙂-1"],
        [],
    ]
    assert {page["total"] for page in pages} == {6}
    lean = explorer.get(LIST, params={**params, "includeTotal": "false"}).json()
    assert "total" not in lean
    assert [item["id"] for item in lean["data"]] == ["ord-1", "ORD-3"]


#: (id, definitionId, sourceId, subStatus, currentActivity), created in this order.
AT_ACTIVITIES = [
    ("a1", "wf", "elsa-a", "Suspended", "review"),
    ("a2", "wf", "elsa-b", "Executing", "review"),
    ("a3", "other", "elsa-a", "Suspended", "review"),
    ("a4", "wf", "elsa-a", "Finished", "review"),
    ("a5", "wf", "elsa-a", "Suspended", "Review"),
    ("a6", "wf", None, "Suspended", "review "),
    ("a7", "wf", "elsa-a", "Pending", "rev%"),
    ("a8", "wf", "elsa-a", "Suspended", "über-prüfung"),
    ("a9", "wf", "elsa-a", "Suspended", None),
]


def test_current_activity_is_an_exact_match(client: httpx.Client) -> None:
    for n, (instance_id, definition, source, sub_status, activity) in enumerate(AT_ACTIVITIES):
        fields = {"definitionId": definition, "sourceId": source, "subStatus": sub_status}
        times = {"createdAt": 100 + n, "updatedAt": 1_000 + n}
        post(client, instance_id, **fields, currentActivity=activity, **times)
    post(client, "a-deleted", subStatus="Suspended", currentActivity="review")
    assert client.delete(f"{LIST}/a-deleted").status_code == 200
    assert ids(client, currentActivity="review") == ["a1", "a2", "a3", "a4"]
    assert ids(client, currentActivity="Review") == ["a5"]  # case-sensitive
    assert ids(client, currentActivity="review ") == ["a6"]  # not trimmed
    assert ids(client, currentActivity="rev") == []  # not a prefix
    assert ids(client, currentActivity="rev%") == ["a7"]  # "%" is no wildcard
    assert ids(client, currentActivity="rev_") == []
    assert ids(client, currentActivity="über-prüfung") == ["a8"]
    assert ids(client, currentActivity="r" * 500) == []  # as long as an activity may be
    assert len(ids(client, currentActivity="")) == len(AT_ACTIVITIES)  # empty: no filter
    # Each one with a filter the kept counts are kept by: the total counts rows.
    assert ids(client, currentActivity="review", definitionId="wf") == ["a1", "a2", "a4"]
    assert ids(client, currentActivity="review", subStatus="Suspended") == ["a1", "a3"]
    assert ids(client, currentActivity="review", status="Running", sourceId="elsa-a") == [
        "a1",
        "a3",
    ]
    assert ids(client, currentActivity="review", orderBy="updatedAt", idPrefix="a") == [
        "a4",
        "a3",
        "a2",
        "a1",
    ]
    pages = [
        client.get(LIST, params={"currentActivity": "review", "pageSize": 3, "page": n}).json()
        for n in (1, 2)
    ]
    assert [[item["id"] for item in page["data"]] for page in pages] == [["a1", "a2", "a3"], ["a4"]]
    assert {page["total"] for page in pages} == {4}
    first = client.get(LIST, params={"currentActivity": "review", "pageSize": 3}).json()
    rest = client.get(
        LIST, params={"currentActivity": "review", "pageSize": 3, "cursor": first["nextCursor"]}
    ).json()
    assert ([item["id"] for item in rest["data"]], rest["total"]) == (["a4"], 4)


#: (id, status text as its writer sent it): the original's free text, the .NET service's
#: ELSA statuses, and a word that maps to no sub-status.
STATUS_TEXTS = [
    ("s1", "pending"),
    ("s2", "Pending"),
    ("s3", "awaiting-review"),
    ("s4", "Running"),
    ("s5", "awaiting-review"),
    ("s6", "cancelled"),
    ("s7", "awaiting-review "),
]


def test_status_text_is_an_exact_match_on_what_the_writer_sent(client: httpx.Client) -> None:
    for n, (instance_id, status) in enumerate(STATUS_TEXTS):
        post(client, instance_id, status=status, createdAt=100 + n, updatedAt=1_000 + n)
    post(client, "s-deleted", status="awaiting-review")
    assert client.delete(f"{LIST}/s-deleted").status_code == 200
    assert ids(client, statusText="awaiting-review") == ["s3", "s5"]
    assert ids(client, statusText="awaiting-review ") == ["s7"]  # not trimmed
    assert ids(client, statusText="pending") == ["s1"]  # case-sensitive
    assert ids(client, statusText="Pending") == ["s2"]
    assert ids(client, statusText="await") == []  # not a prefix
    assert len(ids(client, statusText="")) == len(STATUS_TEXTS)  # empty: no filter
    # `status` is ELSA's Running/Finished (by the sub-status each text maps to), not the text.
    assert ids(client, status="Running", statusText="cancelled") == []
    assert ids(client, status="Finished", statusText="cancelled") == ["s6"]
    assert ids(client, subStatus="Pending", statusText="Pending") == ["s2"]
    assert ids(client, statusText="awaiting-review", orderBy="updatedAt") == ["s5", "s3"]
    # Cancelling writes the original's "cancelled": the instance now matches that text.
    assert client.post(f"{LIST}/s4/cancel").status_code == 200
    assert ids(client, statusText="cancelled") == ["s4", "s6"]


#: Instances made for walking pages: ties in both orders, so that the id breaks them.
WALKED: list[dict[str, Any]] = [
    {
        "id": f"run-{n:02}",
        "definitionId": "wf" if n % 2 else "other",
        "sourceId": "elsa-a" if n % 3 else "elsa-b",
        "subStatus": ("Executing", "Finished", "Faulted", "Suspended")[n % 4],
        "createdAt": 1_000 + n // 2,
        "updatedAt": 5_000 - n // 3,
    }
    for n in range(30)
]


def expected(params: dict[str, Any]) -> list[str]:
    """What the filters in `params` select from WALKED, in the order they ask for."""
    order = "createdAt" if params.get("orderBy", "createdAt") == "createdAt" else "updatedAt"
    descending = params.get("orderDirection", "asc" if order == "createdAt" else "desc") == "desc"
    ended = {"Finished", "Faulted", "Cancelled"}
    kept = [
        item
        for item in WALKED
        if item["sourceId"] == params.get("sourceId", item["sourceId"])
        and item["definitionId"] == params.get("definitionId", item["definitionId"])
        and item["createdAt"] >= params.get("createdSince", 0)
        and item["createdAt"] < params.get("createdBefore", MAX_EPOCH_MS)
        and item["updatedAt"] >= params.get("updatedSince", 0)
        and item["updatedAt"] < params.get("updatedBefore", MAX_EPOCH_MS)
        and item["id"].startswith(params.get("idPrefix", ""))
        and (params.get("status") != "Finished" or item["subStatus"] in ended)
    ]
    kept.sort(key=lambda item: (item[order], item["id"]), reverse=descending)
    return [item["id"] for item in kept]


@pytest.mark.parametrize(
    "params",
    [
        {"sourceId": "elsa-a"},
        {"sourceId": "elsa-a", "createdSince": 1_003, "createdBefore": 1_012},
        {"sourceId": "elsa-b", "orderBy": "updatedAt", "updatedBefore": 4_996},
        {"createdSince": 1_002, "orderBy": "createdAt", "orderDirection": "desc"},
        {"updatedSince": 4_993, "updatedBefore": 4_999, "orderDirection": "asc"},
        {"idPrefix": "run-1", "orderBy": "updatedAt", "orderDirection": "asc"},
        {"status": "Finished", "sourceId": "elsa-a", "createdBefore": 1_013},
        {"definitionId": "wf", "idPrefix": "run-", "updatedBefore": 4_998, "createdSince": 1_001},
    ],
)
def test_keyset_pages_walk_exactly_the_filtered_rows(
    client: httpx.Client, params: dict[str, Any]
) -> None:
    for body in WALKED:
        assert client.post(LIST, json={**body, "status": "Running"}).status_code == 201
    want = expected(params)
    assert len(want) >= 4, "each case should span several pages"
    seen: list[str] = []
    cursor = None
    for _ in range(len(want) + 1):
        page_params = {**params, "pageSize": 3} | ({"cursor": cursor} if cursor else {})
        response = client.get(LIST, params=page_params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == len(want)
        seen += [item["id"] for item in page["data"]]
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert seen == want


BAD: list[tuple[dict[str, Any], str]] = [
    ({"createdSince": -1}, "createdSince"),
    ({"createdSince": "1.5"}, "createdSince"),
    ({"createdSince": "yesterday"}, "createdSince"),
    ({"createdSince": ""}, "createdSince"),
    ({"createdSince": MAX_EPOCH_MS + 1}, "createdSince"),
    ({"createdSince": 10**30}, "createdSince"),
    ({"createdBefore": -5}, "createdBefore"),
    ({"createdBefore": "1e3"}, "createdBefore"),
    ({"createdBefore": MAX_EPOCH_MS + 1}, "createdBefore"),
    ({"updatedBefore": -1}, "updatedBefore"),
    ({"updatedBefore": "0x10"}, "updatedBefore"),
    ({"updatedBefore": MAX_EPOCH_MS + 1}, "updatedBefore"),
    ({"updatedSince": MAX_EPOCH_MS + 1}, "updatedSince"),
    ({"idPrefix": "x" * 256}, "idPrefix"),
    ({"sourceId": "s" * 101}, "sourceId"),
    ({"idPrefix": "ord\x00"}, "NUL"),
    ({"sourceId": "\x00"}, "NUL"),
    ({"currentActivity": "review\x00"}, "NUL"),
    ({"currentActivity": "r" * 501}, "currentActivity"),
    ({"statusText": "s" * 256}, "statusText"),
    ({"statusText": "done\x00"}, "NUL"),
    ({"sourceId": "elsa-a", "createdSince": -1}, "createdSince"),
]


def test_bad_values_are_a_400_that_names_the_parameter(explorer: httpx.Client) -> None:
    before = explorer.get(LIST).json()
    for params, named in BAD:
        response = explorer.get(LIST, params=params)
        assert response.status_code == 400, (params, response.text)
        assert named in response.json()["error"], (params, response.text)
    assert explorer.get(LIST).json() == before
    assert before["total"] == len(EXPLORER)
