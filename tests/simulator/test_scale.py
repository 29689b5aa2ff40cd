"""A large simulator answers a sync's delta and deep pages rightly, in-process and over HTTP.

How fast it builds and reads, and its memory, are measured by `bench.simulator_scale`.
"""

from __future__ import annotations

import httpx
import orjson

from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tamma_sync.simulator.instances import InstanceQuery, Order
from tamma_sync.simulator.wire import Fields, instance_query
from tests.support.server import serve_in_thread

INSTANCES = 100_000


def test_delta_and_deep_pages_of_a_large_simulator() -> None:
    simulator = ElsaSimulator(SimulatorConfig(seed=4, instances=INSTANCES))
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
    page = simulator.list_instances(instance_query(Fields.from_body(orjson.dumps(body)), 0))
    assert page["totalCount"] == len(set(report.created) | set(report.updated))

    deep = simulator.list_instances(InstanceQuery(page=90, page_size=1000, order=Order.Created))
    assert deep["totalCount"] == INSTANCES + len(report.created)

    with serve_in_thread(simulator.app) as url:
        response = httpx.post(f"{url}/elsa/api/workflow-instances", json=body, timeout=10)
    assert response.json()["items"] == page["items"]
