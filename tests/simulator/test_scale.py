"""A million instances: built in seconds, bounded memory, delta pages in milliseconds."""

from __future__ import annotations

import gc
import time

import httpx
import orjson

from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tamma_sync.simulator.instances import InstanceQuery, Order
from tamma_sync.simulator.wire import Fields, instance_query
from tests.support.server import serve_in_thread

MILLION = 1_000_000


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def test_a_million_instances() -> None:
    gc.collect()
    before = resident_mb()
    started = time.perf_counter()
    simulator = ElsaSimulator(SimulatorConfig(seed=4, instances=MILLION))
    build_seconds = time.perf_counter() - started
    grown = resident_mb() - before
    assert build_seconds < 10, build_seconds
    assert grown < 300, grown

    cursor = simulator.now()
    report = simulator.step(500)
    body = {
        "timestampFilters": [
            {"column": "UpdatedAt", "operator": "GreaterThanOrEqual", "timestamp": cursor}
        ],
        "orderBy": "UpdatedAt",
        "orderDirection": "Ascending",
        "page": 0,
        "pageSize": 1000,
    }
    query = instance_query(Fields.from_body(orjson.dumps(body)), 0)
    started = time.perf_counter()
    page = simulator.list_instances(query)
    delta_seconds = time.perf_counter() - started
    assert page["totalCount"] == len(set(report.created) | set(report.updated))
    assert delta_seconds < 0.05, delta_seconds

    started = time.perf_counter()
    deep = simulator.list_instances(InstanceQuery(page=900, page_size=1000, order=Order.Created))
    deep_seconds = time.perf_counter() - started
    assert deep["totalCount"] == MILLION + len(report.created)
    assert deep_seconds < 0.2, deep_seconds

    with serve_in_thread(simulator.app) as url:
        response = httpx.post(f"{url}/elsa/api/workflow-instances", json=body, timeout=10)
    assert response.json()["items"] == page["items"]
