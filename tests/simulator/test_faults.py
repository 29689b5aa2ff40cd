"""Fault injection: every mode, counts, probability, path filter, restart."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tamma_sync.simulator import ElsaSimulator, FaultSpec
from tests.support.server import serve_in_thread

LIST = "/workflow-instances"


def test_unavailable_clears_itself_after_count(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    simulator.faults.inject("unavailable", count=2)
    assert [elsa.get(LIST).status_code for _ in range(3)] == [503, 503, 200]
    assert simulator.faults.active() == []


def test_error_limited_to_a_path(simulator: ElsaSimulator, elsa: httpx.Client) -> None:
    simulator.faults.inject("error", path="/workflow-definitions")
    broken = elsa.get("/workflow-definitions")
    assert (broken.status_code, broken.content) == (500, b"")
    assert elsa.get(LIST).status_code == 200
    simulator.faults.clear()
    assert elsa.get("/workflow-definitions").status_code == 200


def test_slow_responses(simulator: ElsaSimulator, elsa: httpx.Client) -> None:
    simulator.faults.inject("slow", delay=0.4, count=1)
    started = time.monotonic()
    assert elsa.get(LIST, params={"pageSize": 1}).status_code == 200
    assert time.monotonic() - started >= 0.4
    simulator.faults.inject("slow", delay=1.0, count=1)
    with pytest.raises(httpx.ReadTimeout):
        elsa.get(LIST, timeout=0.2)


def test_malformed_json_keeps_status_200(simulator: ElsaSimulator, elsa: httpx.Client) -> None:
    simulator.faults.inject("malformed", count=1)
    response = elsa.get(LIST, params={"pageSize": 3})
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    assert elsa.get(LIST, params={"pageSize": 3}).json()["totalCount"] == 300


def test_short_pages_drop_items_but_keep_total(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    full = elsa.get(LIST, params={"pageSize": 10}).json()
    simulator.faults.inject("short_page", count=1)
    short = elsa.get(LIST, params={"pageSize": 10}).json()
    assert short["totalCount"] == full["totalCount"] == 300
    assert short["items"] == full["items"][:5]
    simulator.faults.inject("short_page", count=1, drop=3, path="/workflow-definitions")
    detail = elsa.get(f"{LIST}/{full['items'][0]['id']}")
    assert detail.status_code == 200, "not a page: unaffected and not counted"
    definitions = elsa.get("/workflow-definitions", params={"versionOptions": "Latest"}).json()
    assert len(definitions["items"]) == definitions["totalCount"] - 3
    assert simulator.faults.active() == []


def test_probability_is_seeded_and_reproducible(
    simulator: ElsaSimulator, elsa: httpx.Client
) -> None:
    simulator.faults.inject("unavailable", probability=0.5)
    codes = [elsa.get(LIST, params={"pageSize": 1}).status_code for _ in range(40)]
    assert 5 < codes.count(503) < 35 and set(codes) == {200, 503}
    again = ElsaSimulator(simulator.config)
    again.faults.inject("unavailable", probability=0.5)
    assert [again.faults.fire("unavailable", LIST) is not None for _ in range(40)] == [
        code == 503 for code in codes
    ]


def test_faults_via_control_api(control: httpx.Client, elsa: httpx.Client) -> None:
    spec = {"kind": "unavailable", "count": 1, "path": "/identity"}
    assert control.post("/faults", json=spec).json() == {
        **FaultSpec("unavailable").to_wire(),
        **spec,
    }
    assert len(control.get("/faults").json()) == 1
    assert elsa.post("/identity/login", json={}).status_code == 503
    assert control.get("/faults").json() == []
    control.post("/faults", json={"kind": "error"})
    assert control.get("/_simulator/state").status_code == 404
    assert control.get("/state").status_code == 200, "control routes are never faulted"
    assert control.delete("/faults").json() == []
    assert control.post("/faults", json={"kind": "explode"}).status_code == 400


def test_the_same_state_is_served_again_after_a_stop(simulator: ElsaSimulator) -> None:
    with serve_in_thread(simulator.app) as url:
        before = httpx.get(f"{url}/elsa/api{LIST}", timeout=5).json()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/elsa/api{LIST}", timeout=5)
    simulator.step(5)
    with serve_in_thread(simulator.app) as again:
        after = httpx.get(f"{again}/elsa/api{LIST}", timeout=5).json()
    assert after["totalCount"] >= before["totalCount"]
    assert after != before
    assert {i["id"] for i in before["items"]} <= {i["id"] for i in after["items"]}
