"""ELSA misbehaving: the mirror stays intact, nothing is deleted on a bad listing, and the
next cycle after recovery converges."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tamma_sync.elsa import ElsaClient, Timeouts
from tamma_sync.models import DEFAULT_TENANT_ID, SyncPhase
from tamma_sync.settings import SourceSettings
from tamma_sync.simulator import ElsaSimulator, FaultKind, SimulatorConfig
from tamma_sync.store import Store
from tamma_sync.sync import StoreSink, SyncOptions, SyncService
from tests.support.mirror import assert_mirror_equals, mirrored_instances
from tests.support.process import free_port
from tests.support.server import serve_in_thread
from tests.sync.conftest import FAST_RETRY, PAGE_SIZE

T = DEFAULT_TENANT_ID


async def _mirror(store: Store) -> list[dict[str, Any]]:
    return [instance.model_dump() for instance in await mirrored_instances(store)]


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("unavailable", {}),
        ("error", {}),
        ("malformed", {}),
        ("slow", {"delay": 3.0}),
    ],
)
async def test_failing_elsa_leaves_the_mirror_intact_then_converges(
    service: SyncService,
    store: Store,
    simulator: ElsaSimulator,
    kind: FaultKind,
    spec: dict[str, Any],
) -> None:
    await service.run_cycle()
    simulator.delete_instances(simulator.instance_ids()[:10])
    simulator.step(60)
    before = await _mirror(store)

    simulator.faults.inject(kind, **spec)  # every request, until cleared
    report = await service.run_cycle()
    assert report.error is not None
    assert await _mirror(store) == before, "a failing ELSA changes nothing in the mirror"
    state = await store.source_state(T, "elsa")
    assert state is not None
    assert state.phase is SyncPhase.ERROR
    assert state.last_error == report.error
    assert state.counters.failed_cycles == 1

    simulator.faults.clear()
    recovered = await service.run_cycle()
    assert recovered.error is None
    await assert_mirror_equals(store, simulator)
    state = await store.source_state(T, "elsa")
    assert state is not None and state.phase is SyncPhase.IDLE


async def test_transient_faults_are_retried_within_a_cycle(
    service: SyncService, store: Store, simulator: ElsaSimulator
) -> None:
    simulator.faults.inject("unavailable", count=1)
    simulator.faults.inject("malformed", count=1)
    report = await service.run_cycle()
    assert report.error is None
    await assert_mirror_equals(store, simulator)


async def test_short_pages_delete_only_what_elsa_confirms_gone(
    service: SyncService, store: Store, simulator: ElsaSimulator
) -> None:
    await service.run_cycle()
    deleted = simulator.instance_ids()[:5]
    simulator.delete_instances(deleted)
    count_before = len(await mirrored_instances(store))

    # Every listing page now misses rows while totalCount still counts them: the rows a
    # page lost are only candidates, and ELSA answers 200 for them.
    simulator.faults.inject("short_page", drop=3)
    report = await service.run_cycle()
    assert report.written.deleted == 5
    remaining = {instance.id for instance in await mirrored_instances(store)}
    assert len(remaining) == count_before - 5
    assert remaining == set(simulator.instance_ids()), "nothing ELSA still holds was deleted"
    assert [d.id for d in await store.list_definitions(T)] == sorted(
        simulator.snapshot(details=False).definitions
    ), "a short definitions page deletes no definition"

    simulator.faults.clear()
    assert (await service.run_cycle()).error is None
    await assert_mirror_equals(store, simulator)


async def test_elsa_down_then_back_on_the_same_port(store: Store, options: SyncOptions) -> None:
    simulator = ElsaSimulator(SimulatorConfig(seed=9, definitions=4, instances=120))
    port = free_port()
    source = SourceSettings(id="elsa", url=f"http://127.0.0.1:{port}", poll_interval=0.05)
    async with ElsaClient.from_settings(
        source, page_size=PAGE_SIZE, retry=FAST_RETRY, timeouts=Timeouts(connect=1, read=2)
    ) as client:
        service = SyncService(source, client, StoreSink(store, T), options)
        with serve_in_thread(simulator.app, port=port):
            assert (await service.run_cycle()).error is None
        # The server is gone: connections are refused.
        simulator.step(30)
        before = await _mirror(store)
        report = await service.run_cycle()
        assert report.error is not None
        assert await _mirror(store) == before
        with serve_in_thread(simulator.app, port=port):
            assert (await service.run_cycle()).error is None
    await assert_mirror_equals(store, simulator)


async def test_wrong_credentials_are_reported_and_write_nothing(
    store: Store, options: SyncOptions
) -> None:
    simulator = ElsaSimulator(
        SimulatorConfig(seed=3, definitions=3, instances=20, require_auth=True)
    )
    with serve_in_thread(simulator.app) as url:
        source = SourceSettings(id="elsa", url=url, api_key="wrong-key")
        async with ElsaClient.from_settings(source, retry=FAST_RETRY) as client:
            service = SyncService(source, client, StoreSink(store, T), options)
            report = await service.run_cycle()
    assert report.error is not None
    assert "401" in report.error
    assert "wrong-key" not in report.error, "credentials never appear in errors"
    assert await mirrored_instances(store) == []
    state = await store.source_state(T, "elsa")
    assert state is not None and state.phase is SyncPhase.ERROR


@pytest.mark.parametrize("credentials", ["api_key", "login"])
async def test_secured_elsa_with_key_or_login(
    store: Store, options: SyncOptions, credentials: str
) -> None:
    simulator = ElsaSimulator(
        SimulatorConfig(
            seed=3, definitions=3, instances=60, require_auth=True, access_token_lifetime=0.5
        )
    )
    with serve_in_thread(simulator.app) as url:
        auth: dict[str, str] = (
            {"api_key": "00000000-0000-0000-0000-000000000000"}
            if credentials == "api_key"
            else {"username": "admin", "password": "password"}
        )
        source = SourceSettings.model_validate({"id": "elsa", "url": url, **auth})
        async with ElsaClient.from_settings(source, page_size=PAGE_SIZE) as client:
            service = SyncService(source, client, StoreSink(store, T), options)
            assert (await service.run_cycle()).error is None
            simulator.step(20)
            await asyncio.sleep(0.7)  # longer than the token's life: it must be renewed
            assert (await service.run_cycle()).error is None
    await assert_mirror_equals(store, simulator)
