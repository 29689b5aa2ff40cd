"""Fixtures: a small seeded simulator served over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tests.support.http import TLS
from tests.support.server import serve_in_thread

SEED = 11
TIMEOUT = httpx.Timeout(10.0)


@pytest.fixture
def config() -> SimulatorConfig:
    """The simulator's config; tests override it with their own fixture when needed."""
    return SimulatorConfig(seed=SEED, instances=300)


@pytest.fixture
def simulator(config: SimulatorConfig) -> ElsaSimulator:
    return ElsaSimulator(config)


@pytest.fixture
def base_url(simulator: ElsaSimulator) -> Iterator[str]:
    with serve_in_thread(simulator.app) as url:
        yield url


@pytest.fixture
def elsa(base_url: str, simulator: ElsaSimulator) -> Iterator[httpx.Client]:
    """A client rooted at the ELSA API prefix."""
    prefixed = base_url + simulator.config.prefix
    with httpx.Client(base_url=prefixed, timeout=TIMEOUT, verify=TLS) as client:
        yield client


@pytest.fixture
def control(base_url: str) -> Iterator[httpx.Client]:
    """A client rooted at the control API."""
    with httpx.Client(base_url=base_url + "/_simulator", timeout=TIMEOUT, verify=TLS) as client:
        yield client


def all_instances(elsa: httpx.Client, **body: object) -> list[dict[str, Any]]:
    """Every instance summary matching `body` (no pageSize: ELSA returns everything)."""
    response = elsa.post("/workflow-instances", json=body)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert isinstance(items, list)
    return items
