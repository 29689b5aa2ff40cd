"""End to end over real HTTP: simulator ⇄ sync ⇄ store, on SQLite and PostgreSQL.

After each kind of change in ELSA, one sync cycle makes the mirror equal to ELSA again.
"""

from __future__ import annotations

from typing import Any

import pytest

from tamma_sync.elsa import ElsaClient
from tamma_sync.models import DEFAULT_TENANT_ID, ChangeOp, EntityKind, SyncPhase
from tamma_sync.settings import DetailsPolicy, SourceSettings
from tamma_sync.simulator import ElsaSimulator
from tamma_sync.store import Store
from tamma_sync.sync import StoreSink, SyncOptions, SyncService
from tests.elsa.harness import Recorder
from tests.support.mirror import assert_mirror_equals
from tests.support.server import serve_in_thread
from tests.sync.conftest import INSTANCES, PAGE_SIZE

T = DEFAULT_TENANT_ID


async def test_initial_sync_of_many_pages(
    service: SyncService, store: Store, simulator: ElsaSimulator
) -> None:
    report = await service.run_cycle()
    assert report.error is None
    assert report.written.created == INSTANCES + 8
    await assert_mirror_equals(store, simulator)
    state = await store.source_state(T, "elsa")
    assert state is not None
    assert state.phase is SyncPhase.IDLE
    assert state.cursor is not None
    assert state.elsa_version == "3.7.1"
    assert state.counters.instances_written == INSTANCES


async def test_idle_cycle_writes_nothing_and_fetches_no_details(
    service: SyncService, store: Store
) -> None:
    await service.run_cycle()
    seq = await store.last_seq()
    report = await service.run_cycle()
    assert report.error is None
    assert (report.written.created, report.written.updated) == (0, 0)
    assert report.details_fetched == 0, "rows at the cursor were taken by the last cycle"
    assert await store.last_seq() == seq, "no change-log row for an idle cycle"


async def test_instances_progressing(
    service: SyncService, store: Store, simulator: ElsaSimulator
) -> None:
    await service.run_cycle()
    moved = simulator.step(150)
    report = await service.run_cycle()
    assert report.error is None
    assert report.written.created == len(moved.created)
    assert report.written.updated == len(set(moved.updated) - set(moved.created))
    await assert_mirror_equals(store, simulator)


async def test_instances_changed_in_one_commit_share_the_cursor_timestamp(
    service: SyncService, store: Store, simulator: ElsaSimulator
) -> None:
    await service.run_cycle()
    # Many more rows than a page, all stamped with one timestamp.
    ids = simulator.create_instances(130)
    await service.run_cycle()
    simulator.progress_instances(ids[:7])
    await service.run_cycle()
    await assert_mirror_equals(store, simulator)


async def test_draft_edited_in_place_and_new_version_published(
    service: SyncService, store: Store, simulator: ElsaSimulator
) -> None:
    await service.run_cycle()
    definition_id = "tamma-autonomous-mentorship"
    before = await store.get_definition(T, definition_id)
    assert before is not None

    draft = simulator.save_draft(definition_id)
    assert not draft.in_place, "the latest version was published: a new draft version"
    await service.run_cycle()
    await assert_mirror_equals(store, simulator)

    edited = simulator.save_draft(definition_id)
    assert edited.in_place
    assert edited.version_id == draft.version_id
    await service.run_cycle()
    await assert_mirror_equals(store, simulator)

    simulator.publish(definition_id)
    await service.run_cycle()
    await assert_mirror_equals(store, simulator)
    after = await store.get_definition(T, definition_id)
    assert after is not None
    assert (after.version, after.is_published) == ((before.version or 0) + 1, True)


async def test_deleted_instances_become_tombstones(
    service: SyncService, store: Store, simulator: ElsaSimulator
) -> None:
    await service.run_cycle()
    gone = simulator.instance_ids()[:25]
    assert simulator.delete_instances(gone) == 25
    report = await service.run_cycle()
    assert report.reconciled
    assert report.written.deleted == 25
    await assert_mirror_equals(store, simulator)
    deletes = {
        change.entity_id
        for change in await store.changes_after(0, limit=10_000)
        if change.op is ChangeOp.DELETE
    }
    assert deletes == set(gone)


async def test_deleted_definition_takes_its_instances(
    service: SyncService, store: Store, simulator: ElsaSimulator
) -> None:
    await service.run_cycle()
    definition_id = "tamma-autonomous-mentorship"
    deleted_instances = simulator.delete_definition(definition_id)
    assert deleted_instances
    await service.run_cycle()
    await assert_mirror_equals(store, simulator)
    assert await store.get_definition(T, definition_id) is None
    definition_deletes = [
        change
        for change in await store.changes_after(0, limit=10_000)
        if change.op is ChangeOp.DELETE and change.entity is EntityKind.DEFINITION
    ]
    assert [change.entity_id for change in definition_deletes] == [definition_id]


async def test_resume_after_a_worker_dies_mid_sync(
    service: SyncService, store: Store, simulator: ElsaSimulator
) -> None:
    pages = 0

    def die_after_three_pages(_rows: int) -> None:
        nonlocal pages
        pages += 1
        if pages == 3:
            raise KeyboardInterrupt  # the worker is gone, mid-walk

    service.on_progress = die_after_three_pages
    with pytest.raises(KeyboardInterrupt):
        await service.run_cycle()
    state = await store.source_state(T, "elsa")
    assert state is not None and state.cursor is not None, "progress of committed pages kept"
    partial = (await store.source_counts(T))["elsa"]["instances"]
    assert 0 < partial < INSTANCES

    simulator.step(40)
    restarted = SyncService(service.source, service._client, service._sink, service._options)
    report = await restarted.run_cycle()
    assert report.error is None
    assert report.written.created < INSTANCES + 40, "resumed from the cursor, not from scratch"
    await assert_mirror_equals(store, simulator)
    creates = [
        change.entity_id
        for change in await store.changes_after(0, limit=10_000)
        if change.op is ChangeOp.CREATE and change.entity is EntityKind.INSTANCE
    ]
    assert len(creates) == len(set(creates)), "no instance was created twice"


def _oversized_correlation_id(listing: dict[str, Any]) -> None:
    """One row our limits refuse, an ended one (which the sync maps from the listing under
    every details policy)."""
    ended = [row for row in listing.get("items", []) if row["subStatus"] == "Finished"]
    if ended:
        ended[0]["correlationId"] = "x" * 300


@pytest.mark.parametrize("details", [DetailsPolicy.NONE, DetailsPolicy.ACTIVE])
async def test_a_row_breaking_our_limits_is_skipped_not_blocking(
    store: Store, simulator: ElsaSimulator, details: DetailsPolicy
) -> None:
    options = SyncOptions(page_size=PAGE_SIZE, details=details)
    recorder = Recorder(simulator.app)
    recorder.rewrite = _oversized_correlation_id
    with serve_in_thread(recorder) as url:
        source = SourceSettings(id="elsa", url=url)
        async with ElsaClient.from_settings(source, page_size=PAGE_SIZE) as client:
            service = SyncService(source, client, StoreSink(store, T), options)
            report = await service.run_cycle()
    assert report.error is None
    rejected = service.state.counters.rejected
    assert rejected >= 1, "the bad row is counted"
    assert report.written.created == 8 + INSTANCES - rejected, "and every other row is stored"
