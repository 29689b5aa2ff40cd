"""Instance detail and variables over HTTP, mapped to what the mirror stores."""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

import pytest

from tamma_sync.elsa import ElsaNotFound, ElsaTimestamp, instance_write
from tamma_sync.models import SubStatus
from tamma_sync.simulator import ElsaSimulator, InstanceTruth, SimulatorConfig
from tests.elsa.harness import Canned, client_for, serving


def _ms(text: str | None) -> int | None:
    return None if text is None else ElsaTimestamp.parse(text).epoch_ms


def _pick(sim: ElsaSimulator, sub_status: str) -> InstanceTruth:
    return next(t for t in sim.snapshot().instances.values() if t.sub_status == sub_status)


@pytest.mark.parametrize("sub_status", ["Suspended", "Executing", "Finished", "Faulted"])
async def test_detail_and_variables_map_to_the_truth(sub_status: str) -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=51, instances=200))
    truth = _pick(sim, sub_status)
    with serving(sim) as (url, _):
        async with client_for(url) as elsa:
            detail = await elsa.get_instance(truth.id)
            variables = await elsa.get_instance_variables(truth.id, detail=detail)
    write = instance_write(detail, variables=variables, source_id="sim")
    assert write.sub_status is SubStatus(sub_status)
    assert write.status == truth.status
    assert write.current_activity == truth.current_activity
    assert write.variables == truth.variables
    assert (write.definition_id, write.definition_version, write.definition_version_id) == (
        truth.definition_id,
        truth.version,
        truth.definition_version_id,
    )
    assert (write.correlation_id, write.name, write.incident_count) == (
        truth.correlation_id,
        truth.name,
        truth.incident_count,
    )
    assert (write.created_at, write.updated_at, write.finished_at) == (
        _ms(truth.created_at),
        _ms(truth.updated_at),
        _ms(truth.finished_at),
    )
    if sub_status == "Suspended":
        assert write.current_activity is not None
    if sub_status == "Faulted":
        assert detail.workflow_state is not None and detail.workflow_state.incidents


async def test_variables_before_elsa_3_3_come_from_the_workflow_state() -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=52, instances=200))
    suspended = [t for t in sim.snapshot().instances.values() if t.sub_status == "Suspended"]
    with serving(sim) as (url, wire):
        wire.canned.append(Canned("GET", "/variables", 404))
        async with client_for(url) as elsa:
            for truth in suspended[:3]:
                variables = await elsa.get_instance_variables(truth.id)
                assert truth.variables is not None
                # Every declared variable: one with no value stored has its default.
                assert {v.name: v.value for v in variables} == truth.variables
    # The missing route is learned once; then detail + definition only.
    assert sum(path.endswith("/variables") for path in wire.paths()) == 1


async def test_a_deleted_instance_has_no_variables_and_no_detail() -> None:
    """ELSA 3.3+ answers an empty list for an unknown id's variables (its variable manager
    finds no instance); the detail's 404 is what says the instance is gone."""
    sim = ElsaSimulator(SimulatorConfig(seed=53, instances=20))
    gone = sim.instance_ids()[0]
    sim.delete_instances([gone])
    with serving(sim) as (url, wire):
        async with client_for(url) as elsa:
            assert await elsa.get_instance_variables(gone) == []
            with pytest.raises(ElsaNotFound):
                await elsa.get_instance(gone)
            live = next(
                t.id for t in sim.snapshot().instances.values() if t.sub_status == "Suspended"
            )
            assert await elsa.get_instance_variables(live)  # the route is still trusted
        wire.canned.append(Canned("GET", "/variables", 404))
        async with client_for(url) as old_elsa:
            with pytest.raises(ElsaNotFound):  # route missing *and* instance gone
                await old_elsa.get_instance_variables(gone)


async def test_definitions_one_by_one_when_many_by_id_is_missing() -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=54, definitions=5, instances=0))
    truth = sim.snapshot().definitions
    with serving(sim) as (url, wire):
        wire.canned.append(Canned("GET", "/many-by-id", 404))
        async with client_for(url) as elsa:
            version_ids = [t.version_id for t in truth.values()]
            models = await elsa.get_definitions([*version_ids, "deadbeef"])
            assert {m.id for m in models} == set(version_ids)
            await elsa.get_definitions(version_ids[:1])
    assert sum(path.endswith("/many-by-id") for path in wire.paths()) == 1


class _ImportSearches(importlib.abc.MetaPathFinder):
    """Records the modules one thread looks for that are not imported yet."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.names: list[str] = []

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if threading.get_ident() == self.thread:
            self.names.append(fullname)
        return None


async def test_requests_to_elsa_search_for_no_module() -> None:
    """A sync with details makes two requests per instance, so per-request overhead is its
    speed. httpcore imports sniffio for every lock and event it creates; where sniffio is
    missing (anyio stopped installing it) each request searched sys.path again, about a
    fifth of the sync's CPU. Python does not remember a failed import."""
    sim = ElsaSimulator(SimulatorConfig(seed=51, instances=20))
    ids = list(sim.snapshot().instances)
    searches = _ImportSearches()
    with serving(sim) as (url, _):
        async with client_for(url) as elsa:
            await elsa.get_instance_variables(ids[0], detail=await elsa.get_instance(ids[0]))
            sys.meta_path.insert(0, searches)
            try:
                details = await asyncio.gather(*(elsa.get_instance(i) for i in ids))
                await asyncio.gather(*(elsa.get_instance_variables(i) for i in ids))
            finally:
                sys.meta_path.remove(searches)
    assert [detail.id for detail in details] == ids
    assert searches.names == [], "modules looked for on every request"


async def test_requests_in_parallel_keep_a_connection_each() -> None:
    """Each request in flight has a connection of its own, kept open for the next ones:
    rounds of eight parallel requests open eight connections, not one per request."""
    sim = ElsaSimulator(SimulatorConfig(seed=54, instances=40))
    ids = list(sim.snapshot().instances)
    with serving(sim) as (url, wire):
        async with client_for(url) as elsa:
            for start in range(0, len(ids), 8):
                chunk = ids[start : start + 8]
                details = await asyncio.gather(*(elsa.get_instance(i) for i in chunk))
                assert [detail.id for detail in details] == chunk
        with pytest.raises(RuntimeError, match="closed"):
            await elsa.get_instance(ids[0])  # after `async with` closed it
    connections = {exchange.connection for exchange in wire.log}
    assert len(wire.log) == len(ids) == 40
    assert None not in connections
    assert len(connections) <= 8
