"""Against an ELSA that behaves like a live one (commit lag, status-free commits, ties,
churn, system workflows, one instance whose details fail for good): each behaviour alone,
then all together, on SQLite and PostgreSQL. Each test here fails on a sync that trusts a
quiet ELSA."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tamma_sync.elsa import ElsaClient, ElsaTimestamp
from tamma_sync.models import DEFAULT_TENANT_ID, ChangeOp, EntityKind, now_ms
from tamma_sync.settings import DetailsPolicy, SourceSettings
from tamma_sync.simulator import (
    ADMIN_API_KEY,
    ElsaSimulator,
    Realism,
    SimulatorConfig,
)
from tamma_sync.store import PurgeCutoffs, Store
from tamma_sync.sync import StoreSink, SyncOptions, SyncService
from tests.elsa.harness import Canned, Recorder
from tests.support.mirror import assert_mirror_equals, expected_state, mirrored_instances
from tests.support.server import serve_in_thread
from tests.sync.conftest import FAST_RETRY, PAGE_SIZE, Clock

T = DEFAULT_TENANT_ID
SYSTEM_DEFINITION = "Elsa.Alterations.ExecuteAlterationPlan"


@contextmanager
def elsa(
    simulator: ElsaSimulator, poll_interval: float = 0.05
) -> Iterator[tuple[SourceSettings, Recorder]]:
    recorder = Recorder(simulator.app)
    with serve_in_thread(recorder) as url:
        yield (
            SourceSettings(id="elsa", url=url, api_key=ADMIN_API_KEY, poll_interval=poll_interval),
            recorder,
        )


@asynccontextmanager
async def syncing(
    simulator: ElsaSimulator,
    store: Store,
    options: SyncOptions,
    clock: Callable[[], float] = time.monotonic,
    poll_interval: float = 0.05,
) -> AsyncIterator[tuple[SyncService, Recorder]]:
    with elsa(simulator, poll_interval) as (source, recorder):
        async with ElsaClient.from_settings(
            source,
            page_size=options.page_size,
            retry=FAST_RETRY,
            system_workflows=options.system_workflows,
        ) as client:
            yield SyncService(source, client, StoreSink(store, T), options, clock=clock), recorder


def _options(**overrides: object) -> SyncOptions:
    settings: dict[str, object] = {
        "page_size": PAGE_SIZE,
        "details": DetailsPolicy.ACTIVE,
        "reconcile_interval": 0.0,
        "reconcile_share": 1.0,
    }
    return SyncOptions(**(settings | overrides))  # type: ignore[arg-type]


async def _mirrored(store: Store, instance_id: str) -> dict[str, object]:
    instance = await store.get_instance(T, instance_id)
    assert instance is not None, instance_id
    return instance.model_dump()


def _running(simulator: ElsaSimulator, sub_status: str = "Suspended") -> list[str]:
    return [
        truth.id
        for truth in simulator.snapshot().instances.values()
        if truth.sub_status == sub_status and not truth.is_system
    ]


async def test_a_change_committed_after_newer_ones_were_read_is_not_lost(store: Store) -> None:
    """ELSA stamps A, then B, commits B first: a cursor past B must still read A."""
    sim = ElsaSimulator(
        SimulatorConfig(seed=61, instances=80, realism=Realism(manual_commits=True))
    )
    sim.flush_commits()
    # A still clock: no running instance's details fall due while the test runs, however slowly.
    async with syncing(sim, store, _options(), clock=Clock()) as (service, _):
        assert (await service.run_cycle()).error is None
        first, second = _running(sim)[:2]
        sim.progress_instances([first], to="Finished")  # stamped first ...
        sim.progress_instances([second], to="Faulted")
        sim.flush_commits([second])  # ... committed last
        await service.run_cycle()
        assert (await _mirrored(store, second))["sub_status"] == "Faulted"
        sim.flush_commits([first])
        await service.run_cycle()
        assert (await _mirrored(store, first))["sub_status"] == "Finished"
        await assert_mirror_equals(store, sim, details=False)

        # Re-reading the look-back window costs no detail request and writes nothing.
        seq = await store.last_seq()
        again = await service.run_cycle()
        assert again.details_fetched == 0
        assert await store.last_seq() == seq


async def test_a_change_committed_beyond_the_look_back_is_repaired_by_the_sweep(
    store: Store,
) -> None:
    sim = ElsaSimulator(
        SimulatorConfig(seed=62, instances=80, realism=Realism(manual_commits=True))
    )
    sim.flush_commits()
    async with syncing(sim, store, _options(lookback=0.0)) as (service, _):
        await service.run_cycle()
        late, other = _running(sim)[:2]
        sim.progress_instances([late], to="Cancelled")
        sim.progress_instances([other], to="Finished")
        sim.flush_commits([other])
        await service.run_cycle()
        sim.flush_commits([late])
        report = await service.run_cycle()
        assert report.reconciled
        assert (await _mirrored(store, late))["sub_status"] == "Cancelled"
        await assert_mirror_equals(store, sim, details=False)


async def test_the_sweep_leaves_out_the_ended_instances_retention_purged(store: Store) -> None:
    """The sweep mirrors again what the mirror lacks, but not the ended instances that
    retention purged (finished longer ago than it keeps them), which ELSA still holds;
    those that finished since, and the running ones, stay mirrored as ELSA has them."""
    sim = ElsaSimulator(SimulatorConfig(seed=64, instances=150))
    day = 86_400_000
    async with syncing(sim, store, _options(keep_ended_ms=day)) as (service, _):
        await service.run_cycle()
        cutoff = now_ms() - day
        truth = [i for i in sim.snapshot().instances.values() if not i.is_system]
        old_ended = {
            i.id
            for i in truth
            if i.finished_at is not None
            and i.sub_status in ("Finished", "Cancelled", "Faulted")
            and ElsaTimestamp.parse(i.finished_at).epoch_ms < cutoff
        }
        assert 0 < len(old_ended) < len(truth) - 10, "some kept, some purged, some running"
        purged = await store.purge(
            PurgeCutoffs(tombstones=0, changes=0, engine_events=0, ended_instances=cutoff)
        )
        assert purged["ended instances"] == len(old_ended)
        report = await service.run_cycle()
        assert report.reconciled and report.error is None
    mirrored = {instance.id for instance in await mirrored_instances(store)}
    assert mirrored == {i.id for i in truth} - old_ended


async def test_running_instances_details_stay_fresh_without_updated_at_moving(
    store: Store,
) -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=63, instances=120))
    clock = Clock()
    async with syncing(sim, store, _options(details_max_age=30.0), clock) as (service, _):
        await service.run_cycle()
        suspended = _running(sim)
        before = {i: sim.snapshot().instances[i] for i in suspended}
        assert sim.silent_commit(suspended) == suspended
        after = sim.snapshot().instances
        assert all(after[i].updated_at == before[i].updated_at for i in suspended)
        assert any(after[i].variables != before[i].variables for i in suspended)

        stale = [
            i for i in suspended if (await _mirrored(store, i))["variables"] != after[i].variables
        ]
        assert stale, "the delta alone does not see these changes"
        # Cycles every poll interval; within the bound every instance is read again.
        for _ in range(16):
            clock.now += 2.0
            assert (await service.run_cycle()).error is None
        truth = sim.snapshot().instances
        for instance_id in suspended:
            mirrored = await _mirrored(store, instance_id)
            want = truth[instance_id]
            assert (mirrored["current_activity"], mirrored["variables"]) == (
                want.current_activity,
                want.variables,
            ), instance_id


async def test_deletions_are_found_while_elsa_creates_instances_during_every_listing(
    store: Store,
) -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=64, instances=300))
    async with syncing(sim, store, _options()) as (service, recorder):
        await service.run_cycle()
        deleted = sim.instance_ids()[:20]
        sim.delete_instances(deleted)

        def churn(method: str, path: str, _query: str) -> None:
            if path.endswith("/workflow-instances"):
                sim.create_instances(1)  # totalCount moves between any two pages

        recorder.on_request = churn
        for _ in range(2):
            assert (await service.run_cycle()).error is None
        mirrored = {instance.id for instance in await mirrored_instances(store)}
        assert mirrored.isdisjoint(deleted), "every deletion found, under churn"
        recorder.on_request = None
        await service.run_cycle()
        await assert_mirror_equals(store, sim, details=False)


async def test_a_deletion_shows_within_a_few_poll_intervals_with_default_settings(
    store: Store,
) -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=65, instances=2_000))
    clock = Clock()
    defaults = SyncOptions(details=DetailsPolicy.NONE)  # only to keep the test short
    async with syncing(sim, store, defaults, clock, poll_interval=2.0) as (service, _):
        await service.run_cycle()
        gone = sim.instance_ids()[100]
        sim.delete_instances([gone])
        shown_after = None
        for cycle in range(1, 6):
            clock.now += 2.0  # the default poll interval
            await service.run_cycle()
            if await store.get_instance(T, gone) is None:
                shown_after = cycle
                break
        assert shown_after is not None and shown_after <= 3


async def test_nothing_is_deleted_when_elsa_answers_404_for_every_instance(
    store: Store,
) -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=66, instances=120))
    async with syncing(sim, store, _options()) as (service, recorder):
        await service.run_cycle()
        before = len(await mirrored_instances(store))
        # A proxy that lost the instance routes, while listings lose rows and still work.
        recorder.canned += [
            Canned("GET", f"/workflow-instances/{instance_id}", 404)
            for instance_id in sim.instance_ids()
        ]
        sim.faults.inject("short_page", drop=10, path="/workflow-instances")
        assert (await service.run_cycle()).error is None
        assert len(await mirrored_instances(store)) == before


async def test_when_elsa_holds_no_instance_any_more_the_mirror_follows(store: Store) -> None:
    """No listed instance to check ELSA's answers against: the empty listing and the 404s
    agree, and every instance goes."""
    sim = ElsaSimulator(SimulatorConfig(seed=72, instances=60))
    async with syncing(sim, store, _options()) as (service, _):
        await service.run_cycle()
        sim.delete_instances(sim.instance_ids())
        await service.run_cycle()
        assert await mirrored_instances(store) == []


async def test_an_instance_elsa_cannot_load_is_no_control(store: Store) -> None:
    """Before it deletes anything the sweep asks ELSA for instances it has just listed; one
    that answers 500 is passed over for the next, at one attempt each."""
    sim = ElsaSimulator(SimulatorConfig(seed=73, instances=120))
    by_creation = sorted(sim.snapshot().instances.values(), key=lambda t: t.created_at)
    failing = [truth.id for truth in by_creation[-2:]]  # the newest: asked first
    gone = [t.id for t in by_creation[-15:-2] if t.sub_status == "Finished"][:3]  # last window
    assert gone
    async with syncing(sim, store, _options()) as (service, recorder):
        await service.run_cycle()
        sim.delete_instances(gone)
        recorder.canned += [Canned("GET", f"/workflow-instances/{i}", 500) for i in failing]
        await service.run_cycle()
        for instance_id in gone:
            assert await store.get_instance(T, instance_id) is None
        for instance_id in failing:
            assert recorder.paths("GET").count(f"/elsa/api/workflow-instances/{instance_id}") == 1


# What ELSA answers does not depend on how the store keeps it: SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("version", ["3.0.0", "3.1.0", "3.2.0", "3.2.1", "3.3.0", "3.7.1"])
async def test_variables_as_each_version_answers_them(store: Store, version: str) -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=67, instances=150, package_version=version))
    async with syncing(sim, store, _options(details=DetailsPolicy.ALL)) as (service, _):
        await service.run_cycle()
        await assert_mirror_equals(store, sim)
        running = _running(sim)[:10]
        seen = {i: (await _mirrored(store, i))["variables"] for i in running}
        assert all(seen.values()), "variables of running instances are read"
        sim.progress_instances(running, to="Finished")
        sim.step(30)
        await service.run_cycle()
        await assert_mirror_equals(store, sim)
        for instance_id in running:
            kept = (await _mirrored(store, instance_id))["variables"]
            assert kept, f"{version}: variables of {instance_id} lost when it ended"


async def test_system_workflows_are_left_out_unless_asked_for(store: Store) -> None:
    sim = ElsaSimulator(
        SimulatorConfig(seed=68, instances=200, realism=Realism(system_workflows=True))
    )
    definitions, instances = expected_state(sim, details=False, include_system=True)
    assert SYSTEM_DEFINITION in definitions
    assert any(i["definition_id"] == SYSTEM_DEFINITION for i in instances.values())
    async with syncing(sim, store, _options()) as (service, _):
        await service.run_cycle()
        await assert_mirror_equals(store, sim, details=False)
        assert await store.get_definition(T, SYSTEM_DEFINITION) is None
    async with syncing(sim, store, _options(system_workflows=True)) as (service, _):
        await service.run_cycle()
        await assert_mirror_equals(store, sim, details=False, include_system=True)


async def test_an_instance_whose_details_fail_for_good_is_set_aside(store: Store) -> None:
    sim = ElsaSimulator(
        SimulatorConfig(seed=69, instances=150, realism=Realism(poisoned_details=1))
    )
    [poisoned] = sim.poisoned_ids()
    options = _options(details=DetailsPolicy.ALL)
    clock = Clock()
    async with syncing(sim, store, options, clock) as (service, recorder):
        report = await service.run_cycle()
        assert report.error is None
        await assert_mirror_equals(store, sim)
        state = await store.source_state(T, "elsa")
        assert state is not None
        [rejection] = state.rejections
        assert rejection.id == poisoned
        assert "500" in rejection.reason
        assert state.counters.rejected == 1

        # Tried again later, and only then.
        detail_path = f"/elsa/api/workflow-instances/{poisoned}"
        tried = recorder.paths("GET").count(detail_path)
        await service.run_cycle()
        assert recorder.paths("GET").count(detail_path) == tried
        clock.now += 1.1  # the first retry comes after 10 poll intervals (1 s min)
        await service.run_cycle()
        assert recorder.paths("GET").count(detail_path) == tried + 1, "one attempt, once due"


#: A trigger in the test's own database refuses rows with this correlation id, as a
#: database refuses content it cannot keep: SQLite's RAISE(ABORT) is a constraint error,
#: PostgreSQL's SQLSTATE 22023 a data exception.
REFUSED_CORRELATION_ID = "refused-by-the-database"
REFUSING_TRIGGER = {
    "sqlite": [
        "CREATE TRIGGER refuse_one BEFORE INSERT ON instances"
        f" WHEN NEW.correlation_id = '{REFUSED_CORRELATION_ID}'"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN"
        f" IF NEW.correlation_id = '{REFUSED_CORRELATION_ID}' THEN"
        " RAISE EXCEPTION 'refused by the test' USING ERRCODE = '22023'; END IF;"
        " RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_one BEFORE INSERT ON instances"
        " FOR EACH ROW EXECUTE FUNCTION refuse_one()",
    ],
}


async def _sync_with_one_correlation_id(store: Store, correlation_id: str) -> str:
    """One cycle over an ELSA whose one finished instance carries `correlation_id`."""
    sim = ElsaSimulator(SimulatorConfig(seed=70, instances=150))
    bad = _running(sim, "Finished")[0]  # mirrored from its list row, without details

    def with_that_correlation_id(listing: dict[str, Any]) -> None:
        for item in listing.get("items", []):
            if item["id"] == bad:
                item["correlationId"] = correlation_id

    with elsa(sim) as (source, recorder):
        recorder.rewrite = with_that_correlation_id
        async with ElsaClient.from_settings(source, page_size=PAGE_SIZE) as client:
            # A clock that stands still: however slow the machine, the set-aside row does
            # not come due for its retry (read from its details, not rewritten) this cycle.
            service = SyncService(source, client, StoreSink(store, T), _options(), clock=Clock())
            report = await service.run_cycle()
    assert report.error is None
    mirrored = {instance.id for instance in await mirrored_instances(store)}
    assert mirrored == set(sim.instance_ids()) - {bad}, "every other row is stored"
    return bad


async def test_a_row_the_database_refuses_is_set_aside(store: Store, database_url: str) -> None:
    sql_engine = create_async_engine(database_url)
    try:
        async with sql_engine.begin() as connection:
            for statement in REFUSING_TRIGGER[make_url(database_url).get_backend_name()]:
                await connection.execute(sa.text(statement))
    finally:
        await sql_engine.dispose()
    bad = await _sync_with_one_correlation_id(store, REFUSED_CORRELATION_ID)
    state = await store.source_state(T, "elsa")
    assert state is not None
    [rejection] = state.rejections
    assert rejection.id == bad
    assert "refused by the test" in rejection.reason
    assert "INSERT" not in rejection.reason and REFUSED_CORRELATION_ID not in rejection.reason


async def test_text_no_database_can_keep_is_set_aside_alike(store: Store) -> None:
    """A NUL character, which PostgreSQL cannot store: refused on both databases alike."""
    bad = await _sync_with_one_correlation_id(store, "bad\x00id")
    state = await store.source_state(T, "elsa")
    assert state is not None
    [rejection] = state.rejections
    assert rejection.id == bad
    assert "correlation_id" in rejection.reason and "NUL" in rejection.reason
    assert "\x00" not in rejection.reason


async def test_the_mirror_converges_on_a_live_elsa(store: Store) -> None:
    realism = Realism(
        commit_lag=timedelta(milliseconds=400),
        silent_share=0.15,
        delete_share=0.1,
        ties=True,
        system_workflows=True,
        poisoned_details=1,
    )
    sim = ElsaSimulator(SimulatorConfig(seed=71, instances=400, wall_clock=True, realism=realism))
    options = _options(
        details=DetailsPolicy.ALL, lookback=2.0, details_max_age=1.0, reconcile_share=0.5
    )
    stop = threading.Event()

    def churn() -> None:
        while not stop.wait(0.02):
            sim.step(1)  # about 50 changes a second

    async with syncing(sim, store, options) as (service, _):
        worker = asyncio.create_task(service.run())
        mover = threading.Thread(target=churn, daemon=True)
        mover.start()
        await asyncio.sleep(6.0)
        stop.set()
        mover.join()
        sim.flush_commits()
        deadline = time.monotonic() + 20
        while True:
            try:
                await assert_mirror_equals(store, sim)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.25)
        service.stop()
        await worker

    changes = await store.changes_after(0, limit=100_000)
    instance_changes = [c for c in changes if c.entity is EntityKind.INSTANCE]
    live = set(sim.instance_ids())
    wrong_deletes = [
        c.entity_id for c in instance_changes if c.op is ChangeOp.DELETE and c.entity_id in live
    ]
    assert not wrong_deletes
    creates = [c.entity_id for c in instance_changes if c.op is ChangeOp.CREATE]
    assert len(creates) == len(set(creates)), "no instance created twice"
    assert sim.pending_commits() == 0
