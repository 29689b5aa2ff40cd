"""Listings over real HTTP against the simulator: paging, Latest only, delta walk, midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tamma_sync.elsa import Column, ElsaTimestamp, definition_write, instance_write
from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tests.elsa.harness import Canned, client_for, serving


async def test_latest_definitions_only_every_page_from_zero() -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=11, definitions=12, instances=0))
    truth = sim.snapshot().definitions
    with serving(sim) as (url, wire):
        async with client_for(url, page_size=5) as elsa:
            listing = await elsa.list_latest_definitions()
    assert listing.complete, listing.problems
    assert listing.total_count == 12
    assert {row.definition_id: row.id for row in listing.items} == {
        definition_id: latest.version_id for definition_id, latest in truth.items()
    }
    assert all(row.is_latest for row in listing.items)
    queries = [e.query for e in wire.log if e.path.endswith("/workflow-definitions")]
    assert [q.split("page=")[1].split("&")[0] for q in queries] == ["0", "1", "2"]
    assert all("versionOptions=Latest" in q and "pageSize=5" in q for q in queries)


async def test_full_definitions_map_to_what_the_server_holds() -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=12, definitions=7, instances=0))
    truth = sim.snapshot().definitions
    with serving(sim) as (url, _):
        async with client_for(url) as elsa:
            listing = await elsa.list_latest_definitions()
            models = await elsa.get_definitions([row.id for row in listing.items] + ["404"])
    writes = {w.id: w for w in (definition_write(m, source_id="sim") for m in models)}
    assert writes.keys() == truth.keys()  # the unknown id is simply absent
    for definition_id, expected in truth.items():
        write = writes[definition_id]
        assert write.version_id == expected.version_id
        assert (write.name, write.description, write.version) == (
            expected.name,
            expected.description,
            expected.version,
        )
        assert (write.is_published, write.is_latest) == (expected.is_published, True)
        assert write.activities == expected.activities
        assert write.variables == expected.variables
        assert write.source_id == "sim"
        assert write.created_at is not None


async def test_zero_based_paging_by_creation() -> None:
    """250 rows with pageSize 100: pages 0, 1, 2; the old page=1 bug would miss 100."""
    sim = ElsaSimulator(SimulatorConfig(seed=13, instances=250))
    with serving(sim) as (url, wire):
        async with client_for(url, page_size=100) as elsa:
            pages = [await elsa.instances_by_creation(page, 100) for page in range(3)]
    assert [len(page.items) for page in pages] == [100, 100, 50]
    assert sorted(row.id for page in pages for row in page.items) == sorted(sim.instance_ids())
    assert all(page.total_count == 250 for page in pages)
    assert [e.query.split("page=")[1].split("&")[0] for e in wire.log] == ["0", "1", "2"]
    assert all(
        "orderBy=Created" in e.query and "orderDirection=Ascending" in e.query for e in wire.log
    )


async def test_creation_walk_stops_at_its_bound_and_reads_ties_whole() -> None:
    """The sweep's walk: created up to a bound only, in keyset pages; a page of one single
    timestamp is read again as that whole group in one request."""
    sim = ElsaSimulator(SimulatorConfig(seed=20, definitions=3, instances=30))
    tied = sim.create_instances(150)  # one commit: one createdAt
    bound = max(
        ElsaTimestamp.parse(t.created_at) for t in sim.snapshot(details=False).instances.values()
    )
    later = sim.create_instances(5)
    with serving(sim) as (url, wire):
        async with client_for(url, page_size=100) as elsa:
            first = await elsa.creation_page(None, bound)
            assert first is not None and first.full
            after = first.rows[-1].created_at
            assert after is not None
            second = await elsa.creation_page(after, bound)
            assert second is not None and second.full
            assert {row.created_at for row in second.rows} == {after}, "a page of one stamp"
            group = await elsa.instances_between(Column.CREATED, after, after.shifted(1))
    listed = {row.id for row in first.rows} | {row.id for row in group}
    assert set(tied) <= listed
    assert listed == set(sim.instance_ids()) - set(later)
    # Two pages, then the group: a page of 100 says it has 150, so one more of all 150.
    assert wire.paths("POST") == ["/elsa/api/workflow-instances"] * 4


async def test_delta_walk_gets_everything_then_only_what_changed() -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=14, instances=250))
    truth = sim.snapshot(details=False).instances
    with serving(sim) as (url, wire):
        async with client_for(url, page_size=100) as elsa:
            seen: list[str] = []
            cursor = None
            async for page in elsa.iter_instance_changes(None):
                assert page.server_filtered
                assert cursor is None or (page.cursor is not None and page.cursor >= cursor)
                seen += [row.id for row in page.items]
                for row in page.items:
                    expected = truth[row.id]
                    write = instance_write(row)
                    assert write.updated_at == ElsaTimestamp.parse(expected.updated_at).epoch_ms
                    assert (write.status, write.sub_status) == (
                        expected.status,
                        expected.sub_status,
                    )
                cursor = page.cursor
            assert sorted(seen) == sorted(truth)  # each exactly once
            assert cursor == max(ElsaTimestamp.parse(t.updated_at) for t in truth.values())

            report = sim.step(40)
            changed = set(report.created) | set(report.updated)
            wire.log.clear()
            delta: dict[str, ElsaTimestamp | None] = {}
            async for page in elsa.iter_instance_changes(cursor):
                delta.update({row.id: row.updated_at for row in page.items})
    assert changed <= delta.keys()
    # Inclusive cursor: besides the changes, only rows stamped exactly at the old cursor.
    assert all(stamp is not None and stamp >= cursor for stamp in delta.values())
    assert len(delta.keys() - changed) <= 1
    assert len(wire.log) == 1  # a delta that fits one page is one request


async def test_rows_sharing_one_timestamp_beyond_a_page_are_all_delivered() -> None:
    """One commit stamps 150 instances alike: the walk reads the stamp as one group."""
    sim = ElsaSimulator(SimulatorConfig(seed=15, definitions=3, instances=0))
    tied = sim.create_instances(150)
    later = sim.create_instances(30)
    with serving(sim) as (url, _):
        async with client_for(url, page_size=100) as elsa:
            seen = [row.id async for page in elsa.iter_instance_changes(None) for row in page.items]
    assert sorted(seen) == sorted(tied + later)


async def test_midnight_cursor_is_never_sent_so_no_whole_day_jump() -> None:
    """A server 2 h behind UTC reads a UTC-midnight `>=` filter as 'from 02:00Z'."""
    midnight = datetime(2025, 6, 2, tzinfo=UTC)
    config = SimulatorConfig(
        seed=16,
        definitions=3,
        instances=20,
        start=midnight,
        server_utc_offset=timedelta(hours=-2),
    )
    sim = ElsaSimulator(config)
    report = sim.step(10)  # stamped a few seconds after midnight
    cursor = ElsaTimestamp.from_datetime(midnight)
    with serving(sim) as (url, _):
        midnight_filter = {
            "column": "UpdatedAt",
            "operator": "GreaterThanOrEqual",
            "timestamp": cursor.to_iso(),
        }
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            raw = await http.post(
                "/elsa/api/workflow-instances",
                json={"timestampFilters": [midnight_filter], "pageSize": 100},
            )
        assert raw.json()["items"] == []  # the quirk, as ELSA has it
        async with client_for(url) as elsa:
            seen = {
                row.id async for page in elsa.iter_instance_changes(cursor) for row in page.items
            }
    assert set(report.created) | set(report.updated) <= seen


async def test_elsa_3_0_without_instance_query_falls_back_to_full_listings() -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=17, instances=250))
    with serving(sim) as (url, wire):
        wire.canned.append(Canned("POST", "/workflow-instances", 405))
        async with client_for(url, page_size=100) as elsa:
            pages = [page async for page in elsa.iter_instance_changes(None)]
            assert not any(page.server_filtered for page in pages)
            # The cursor only moves once the whole listing has been read.
            assert [page.cursor for page in pages[:-1]] == [None] * (len(pages) - 1)
            cursor = pages[-1].cursor
            truth = sim.snapshot(details=False).instances
            assert cursor == max(ElsaTimestamp.parse(t.updated_at) for t in truth.values())
            assert sorted(row.id for page in pages for row in page.items) == sorted(truth)

            report = sim.step(20)
            changed = {
                row.id async for page in elsa.iter_instance_changes(cursor) for row in page.items
            }
    assert set(report.created) | set(report.updated) <= changed
    assert len(changed) <= 21
    assert wire.paths("POST") == ["/elsa/api/workflow-instances"]  # learned once


async def test_fallback_keeps_the_cursor_when_the_listing_was_inconsistent() -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=18, instances=250))
    since = ElsaTimestamp.parse(
        sim.snapshot(details=False).instances[sim.instance_ids()[0]].updated_at
    )
    with serving(sim) as (url, wire):
        wire.canned.append(Canned("POST", "/workflow-instances", 404))
        sim.faults.inject("short_page", count=1, path="/workflow-instances")
        async with client_for(url, page_size=100) as elsa:
            pages = [page async for page in elsa.iter_instance_changes(since)]
    assert pages[-1].cursor == since


async def test_instances_updated_during_the_walk_are_not_skipped() -> None:
    """Offset paging would lose rows here: updated rows jump to the end of the order and
    every later row shifts one page up. The keyset walk re-reads from the newest stamp."""
    sim = ElsaSimulator(SimulatorConfig(seed=19, instances=250))
    first_page_ids: list[str] = []
    posts = 0

    def update_mid_walk(method: str, path: str, query: str) -> None:
        nonlocal posts
        if method == "POST" and path.endswith("/workflow-instances"):
            posts += 1
            if posts == 2:
                sim.progress_instances(first_page_ids[:10], to="Cancelled")

    with serving(sim) as (url, wire):
        wire.on_request = update_mid_walk
        async with client_for(url, page_size=100) as elsa:
            seen: set[str] = set()
            async for page in elsa.iter_instance_changes(None):
                if not first_page_ids:
                    first_page_ids.extend(row.id for row in page.items)
                seen.update(row.id for row in page.items)
    assert seen == set(sim.instance_ids())
