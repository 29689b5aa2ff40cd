"""Fixtures for sync tests: the project's ELSA simulator served over real loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tamma_sync.elsa import ElsaClient, RetryPolicy, Timeouts
from tamma_sync.settings import DetailsPolicy, SourceSettings
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tamma_sync.store import Store
from tamma_sync.sync import StoreSink, SyncOptions, SyncService
from tests.support.server import serve_in_thread

SOURCE_ID = "elsa"
#: Small pages so that a couple of hundred instances already span many pages.
PAGE_SIZE = 25
#: Instances in the simulated ELSA of most sync tests: eight pages.
INSTANCES = 200
#: Fail fast in tests: three attempts, little waiting.
FAST_RETRY = RetryPolicy(attempts=3, total_seconds=2.0, wait_initial=0.01, wait_max=0.05)


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(seed=5, definitions=8, instances=INSTANCES)


@pytest.fixture
def simulator(simulator_config: SimulatorConfig) -> ElsaSimulator:
    return ElsaSimulator(simulator_config)


@pytest.fixture
def elsa_url(simulator: ElsaSimulator) -> Iterator[str]:
    with serve_in_thread(simulator.app) as url:
        yield url


@pytest.fixture
def source(elsa_url: str) -> SourceSettings:
    return SourceSettings(id=SOURCE_ID, url=elsa_url, api_key=ADMIN_API_KEY, poll_interval=0.05)


@pytest.fixture
def options() -> SyncOptions:
    return SyncOptions(
        page_size=PAGE_SIZE, details=DetailsPolicy.ALL, reconcile_interval=0, reconcile_share=1.0
    )


@pytest.fixture
async def elsa_client(source: SourceSettings) -> AsyncIterator[ElsaClient]:
    async with ElsaClient.from_settings(
        source, page_size=PAGE_SIZE, retry=FAST_RETRY, timeouts=Timeouts(connect=1, read=2)
    ) as elsa:
        yield elsa


class Clock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service(
    source: SourceSettings, elsa_client: ElsaClient, store: Store, options: SyncOptions
) -> SyncService:
    """A sync whose clock stands still: the sweep's budget (charged by request time) and
    retries come due the same on a busy machine as on an idle one."""
    sink = StoreSink(store, source.tenant_id)
    return SyncService(source, elsa_client, sink, options, clock=Clock())
