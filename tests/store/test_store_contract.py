"""The store's contract, run against real SQLite and real PostgreSQL alike."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from operator import attrgetter

import orjson
import pytest
import sqlalchemy as sa

from tamma_sync.models import (
    DEFAULT_TENANT_ID,
    ChangeOp,
    DefinitionWrite,
    EntityKind,
    InstancePatch,
    InstanceWrite,
    SubStatus,
    SyncBatch,
    now_ms,
)
from tamma_sync.store import CatalogTotals, InstanceQuery, PurgeCutoffs, Store
from tamma_sync.store.bulk import statement_lengths
from tamma_sync.store.trends import MINUTE_MS, TrendWindow
from tests.support.mirror import counted_by_definition

T = DEFAULT_TENANT_ID
OTHER = "11111111-1111-1111-1111-111111111111"


def instance(id: str, definition_id: str = "wf", **fields: object) -> InstanceWrite:
    return InstanceWrite.model_validate({"id": id, "definition_id": definition_id, **fields})


async def test_definition_upsert_creates_then_merges_and_skips_no_op_writes(store: Store) -> None:
    [(created, is_new)] = await store.upsert_definitions(
        T, [DefinitionWrite(id="wf", name="Flow", version=1, description="first")]
    )
    assert is_new
    assert created.revision == 1
    assert created.synced_at > 0

    [(same, is_new)] = await store.upsert_definitions(T, [DefinitionWrite(id="wf", name="Flow")])
    assert not is_new
    assert same == created, "a write that changes nothing must not bump revision or syncedAt"

    [(renamed, _)] = await store.upsert_definitions(
        T, [DefinitionWrite(id="wf", name="Flow v2", version=2)]
    )
    assert (renamed.name, renamed.version, renamed.revision) == ("Flow v2", 2, 2)
    assert renamed.description == "first", "fields not sent keep their stored value"
    assert [d.id for d in await store.list_definitions(T)] == ["wf"]
    assert await store.get_definition(T, "missing") is None
    assert await store.list_definitions(OTHER) == []

    kinds = [(c.entity, c.op, c.revision) for c in await store.changes_after(0)]
    assert kinds == [
        (EntityKind.DEFINITION, ChangeOp.CREATE, 1),
        (EntityKind.DEFINITION, ChangeOp.UPDATE, 2),
    ]


async def test_new_definition_needs_a_name(store: Store) -> None:
    with pytest.raises(ValueError, match="no name"):
        await store.upsert_definitions(T, [DefinitionWrite(id="nameless")])
    assert await store.list_definitions(T) == []


async def test_instance_create_keeps_writer_timestamps_and_derives_sub_status(store: Store) -> None:
    created = await store.create_instance(
        T, instance("i1", status="pending", created_at=1_000, updated_at=2_000, variables={"n": 1})
    )
    assert (created.created_at, created.updated_at) == (1_000, 2_000)
    assert created.status == "pending"
    assert created.sub_status is SubStatus.PENDING
    assert created.tenant_id == T
    assert created.revision == 1
    assert await store.get_instance(T, "i1") == created


async def test_instance_create_stamps_missing_timestamps(store: Store) -> None:
    created = await store.create_instance(T, instance("i1", status="Running"))
    assert created.created_at > 1_700_000_000_000
    assert created.updated_at == created.created_at
    assert created.sub_status is SubStatus.EXECUTING
    assert created.variables == {}


async def test_post_on_existing_id_replaces_the_instance(store: Store) -> None:
    await store.create_instance(T, instance("i1", status="pending", current_activity="a"))
    replaced = await store.create_instance(T, instance("i1", definition_id="other"))
    assert replaced.definition_id == "other"
    assert replaced.status is None
    assert replaced.current_activity is None
    assert replaced.revision == 2


async def test_update_changes_only_given_fields_and_keeps_identity(store: Store) -> None:
    await store.create_instance(
        T, instance("i1", status="pending", variables={"a": 1, "b": 2}, created_at=5, updated_at=5)
    )
    updated = await store.update_instance(
        T, "i1", InstancePatch(current_activity="review", variables={"c": 3})
    )
    assert updated is not None
    assert updated.id == "i1"
    assert updated.definition_id == "wf"
    assert updated.status == "pending"
    assert updated.current_activity == "review"
    assert updated.variables == {"c": 3}, "variables are replaced, not merged"
    assert updated.updated_at > 5
    assert updated.created_at == 5
    assert updated.revision == 2
    assert await store.update_instance(T, "missing", InstancePatch(status="x")) is None
    assert await store.update_instance(OTHER, "i1", InstancePatch(status="x")) is None


async def test_update_that_changes_nothing_writes_nothing(store: Store) -> None:
    created = await store.create_instance(
        T, instance("i1", status="Running", variables={"a": 1}, updated_at=1_000)
    )
    seq_before = await store.last_seq()
    same = await store.update_instance(
        T, "i1", InstancePatch(status="Running", variables={"a": 1}, updated_at=999_999)
    )
    assert same == created, "no updatedAt bump, no revision bump"
    assert await store.last_seq() == seq_before, "no change-log row"


async def test_writer_sent_updated_at_is_kept_when_content_changes(store: Store) -> None:
    await store.create_instance(T, instance("i1", status="Running", updated_at=1_000))
    updated = await store.update_instance(
        T, "i1", InstancePatch(status="Finished", updated_at=2_000)
    )
    assert updated is not None
    assert updated.updated_at == 2_000
    assert updated.sub_status is SubStatus.FINISHED
    assert updated.finished_at == 2_000


async def test_sub_status_rederived_from_new_status_unless_given(store: Store) -> None:
    await store.create_instance(T, instance("i1", status="Running", sub_status=SubStatus.SUSPENDED))
    kept = await store.update_instance(T, "i1", InstancePatch(current_activity="x"))
    assert kept is not None and kept.sub_status is SubStatus.SUSPENDED
    rederived = await store.update_instance(T, "i1", InstancePatch(status="Unknown"))
    assert rederived is not None
    assert rederived.status == "Unknown"
    assert rederived.sub_status is None


async def test_delete_tombstones_and_logs_a_delete(store: Store) -> None:
    await store.create_instance(T, instance("i1"))
    assert await store.delete_instance(T, "i1")
    assert not await store.delete_instance(T, "i1")
    assert await store.get_instance(T, "i1") is None
    assert (await store.list_instances(T, InstanceQuery())).total == 0
    last = (await store.changes_after(0))[-1]
    assert (last.op, last.entity_id, last.revision) == (ChangeOp.DELETE, "i1", 2)
    recreated = await store.create_instance(T, instance("i1"))
    assert recreated.revision == 3


async def test_deleting_a_definition_tombstones_its_instances(store: Store) -> None:
    await store.upsert_definitions(T, [DefinitionWrite(id="wf", name="Flow")])
    await store.put_instances(T, [instance(f"i{n}") for n in range(3)])
    await store.create_instance(T, instance("keep", definition_id="other"))
    result = await store.delete_definitions(T, ["wf", "unknown"])
    assert result.deleted == 1 + 3
    assert await store.get_definition(T, "wf") is None
    page = await store.list_instances(T, InstanceQuery())
    assert [i.id for i in page.items] == ["keep"]


async def test_bulk_put_counts_created_updated_unchanged(store: Store) -> None:
    writes = [instance(f"i{n}", status="Running", updated_at=n + 1) for n in range(1_200)]
    _, first = await store.put_instances(T, writes)
    assert (first.created, first.updated, first.unchanged) == (1_200, 0, 0)
    writes[7] = instance("i7", status="Finished", updated_at=99)
    _, second = await store.put_instances(T, writes)
    assert (second.created, second.updated, second.unchanged) == (0, 1, 1_199)
    assert len(await store.changes_after(0, limit=5_000)) == 1_201


async def test_tenants_never_see_each_other(store: Store) -> None:
    await store.create_instance(T, instance("shared-id", status="a"))
    await store.create_instance(OTHER, instance("shared-id", status="b"))
    mine = await store.get_instance(T, "shared-id")
    theirs = await store.get_instance(OTHER, "shared-id")
    assert mine is not None and theirs is not None
    assert (mine.status, theirs.status) == ("a", "b")
    assert (await store.list_instances(OTHER, InstanceQuery())).total == 1
    assert await store.delete_instance(OTHER, "shared-id")
    assert await store.get_instance(T, "shared-id") is not None


async def test_list_filters_use_the_typed_sub_status(store: Store) -> None:
    await store.put_instances(
        T,
        [
            instance("a", status="pending", correlation_id="c1", updated_at=10),
            instance("b", status="RUNNING", updated_at=20),
            instance("c", status="Finished", sub_status=SubStatus.FAULTED, updated_at=30),
            instance("d", definition_id="other", status="completed", updated_at=40),
        ],
    )

    async def ids(**query: object) -> list[str]:
        page = await store.list_instances(T, InstanceQuery(**query))  # type: ignore[arg-type]
        # The total is what the filters match, on a page past the end as well.
        past_end = await store.list_instances(T, InstanceQuery(**query, offset=50))  # type: ignore[arg-type]
        assert page.total == past_end.total == len(page.wire)
        assert past_end.wire == []
        return [i.id for i in page.items]

    assert await ids(sub_statuses=[SubStatus.EXECUTING]) == ["b"]
    assert await ids(sub_statuses=[SubStatus.FAULTED, SubStatus.FINISHED]) == ["c", "d"]
    assert await ids(definition_id="other") == ["d"]
    assert await ids(definition_id="other", sub_statuses=[SubStatus.FAULTED]) == []
    assert await ids(correlation_id="c1") == ["a"]
    assert await ids(correlation_id="c1", sub_statuses=[SubStatus.PENDING]) == ["a"]
    assert await ids(updated_since=30) == ["c", "d"]
    assert await ids(updated_since=30, definition_id="other") == ["d"]


async def test_offset_pages_are_stable_while_instances_change(store: Store) -> None:
    await store.put_instances(T, [instance(f"i{n:02}", created_at=1_000 + n) for n in range(10)])
    first = await store.list_instances(T, InstanceQuery(limit=3, offset=0))
    # Updates between page fetches must not move rows across pages.
    for item in first.items:
        await store.update_instance(T, item.id, InstancePatch(status="touched"))
    await store.update_instance(T, "i05", InstancePatch(status="touched"))
    seen = [i.id for i in first.items]
    for offset in (3, 6, 9):
        seen += [
            i.id
            for i in (await store.list_instances(T, InstanceQuery(limit=3, offset=offset))).items
        ]
    assert seen == [f"i{n:02}" for n in range(10)]
    assert first.total == 10


async def test_keyset_pages_walk_every_row_once_in_both_orders(store: Store) -> None:
    # Equal timestamps on purpose: the id breaks ties.
    await store.put_instances(
        T,
        [
            instance(f"i{n:02}", created_at=1_000 + n // 3, updated_at=5_000 - n // 4)
            for n in range(20)
        ],
    )
    for order_by, descending in (("createdAt", False), ("updatedAt", True), ("createdAt", True)):
        seen: list[str] = []
        after = None
        for _ in range(20):
            page = await store.list_instances(
                T,
                InstanceQuery(order_by=order_by, descending=descending, limit=6, after=after),  # type: ignore[arg-type]
            )
            seen += [i.id for i in page.items]
            after = page.next_after
            if after is None:
                break
        assert sorted(seen) == [f"i{n:02}" for n in range(20)], (order_by, descending)
        assert len(seen) == 20


async def test_pages_by_several_sub_statuses_hold_exactly_the_matching_rows_in_order(
    store: Store,
) -> None:
    """Several sub-statuses are read one index range each and merged: every page, by offset
    and by keyset, in both orders, must still be the matching rows in (order, id) order."""
    import random

    rng = random.Random(3)
    statuses = ["pending", "running", "Suspended", "completed", "failed"]  # no Cancelled
    await store.put_instances(
        T,
        [
            instance(
                f"i{n:03}",
                definition_id=rng.choice(["a", "b"]),
                status=rng.choice(statuses),
                created_at=1_000 + rng.randrange(40),  # ties: the id decides
                updated_at=9_000 - rng.randrange(40),
            )
            for n in range(120)
        ],
    )
    everything = (await store.list_instances(T, InstanceQuery(limit=200))).items
    wanted_sets = [
        [SubStatus.EXECUTING, SubStatus.FAULTED],
        [SubStatus.PENDING, SubStatus.SUSPENDED, SubStatus.FINISHED],
        [SubStatus.CANCELLED, SubStatus.FAULTED],
        [SubStatus.SUSPENDED],
        [],
    ]
    for wanted in wanted_sets:
        for definition_id in (None, "a"):
            for order_by, descending in (("createdAt", False), ("updatedAt", True)):
                order = "created_at" if order_by == "createdAt" else "updated_at"
                expected = sorted(
                    (
                        item
                        for item in everything
                        if item.sub_status in wanted and definition_id in (None, item.definition_id)
                    ),
                    key=attrgetter(order, "id"),
                    reverse=descending,
                )
                query = InstanceQuery(
                    definition_id=definition_id,
                    sub_statuses=wanted,
                    order_by=order_by,  # type: ignore[arg-type]
                    descending=descending,
                    limit=7,
                )
                by_offset: list[str] = []
                for offset in range(0, len(expected) + 7, 7):
                    page = await store.list_instances(T, replace(query, offset=offset))
                    assert page.total == len(expected)
                    by_offset += [item["id"] for item in page.wire]
                by_keyset: list[str] = []
                after = None
                for _ in range(len(expected) // 7 + 2):
                    page = await store.list_instances(T, replace(query, after=after))
                    by_keyset += [item["id"] for item in page.wire]
                    after = page.next_after
                    if after is None:
                        break
                ids = [item.id for item in expected]
                assert by_offset == by_keyset == ids, (wanted, definition_id, order_by)


async def test_concurrent_writes_are_serialized_without_errors_or_losses(store: Store) -> None:
    await store.put_instances(T, [instance(f"i{n}", variables={"count": 0}) for n in range(10)])

    async def bump(n: int) -> None:
        await store.update_instance(T, f"i{n % 10}", InstancePatch(variables={"writer": n}))
        await store.create_instance(T, instance(f"new{n}"))

    await asyncio.gather(*(bump(n) for n in range(60)))
    page = await store.list_instances(T, InstanceQuery(limit=200))
    assert page.total == 70
    seqs = [c.seq for c in await store.changes_after(0, limit=1_000)]
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs)) == 10 + 60 + 60


async def test_an_initial_walk_batch_over_rows_already_stored_writes_them_as_updates(
    store: Store,
) -> None:
    """A sync's initial walk writes a batch as if the mirror held none of its instances
    (`Store.apply_sync_batch` with `made`; on PostgreSQL a batch this size is COPYed).
    Where it holds some (written through the compatible API, say), nothing is written
    twice: those are updated, the others created, and the counts and the change log say
    so."""
    await store.create_instance(T, instance("i1", status="Running", created_at=1, updated_at=1))
    writes = [instance(f"i{n}", status="Finished", created_at=1, updated_at=5) for n in range(40)]
    batch = SyncBatch(source_id="elsa", instances=writes)
    result = await store.apply_sync_batch(T, batch, store.new_rows(T, "elsa", writes))
    assert (result.created, result.updated) == (39, 1)
    assert await store.instance_counts(T) == {"wf": {"Finished": 40}}
    logged = await store.changes_after(1, limit=100)
    assert sorted((c.entity_id, c.op, c.revision) for c in logged) == sorted(
        (f"i{n}", ChangeOp.UPDATE if n == 1 else ChangeOp.CREATE, 2 if n == 1 else 1)
        for n in range(40)
    )
    stored = await store.get_instance(T, "i1")
    assert stored is not None and (stored.revision, stored.source_id) == (2, "elsa")
    # A batch of new instances only: all created, as many change rows as instances.
    # Their change rows take their seqs in the batch's order.
    more = [instance(f"n{n}", status="Running", created_at=2, updated_at=2) for n in range(40)]
    batch = SyncBatch(source_id="elsa", instances=more)
    result = await store.apply_sync_batch(T, batch, store.new_rows(T, "elsa", more))
    assert (result.created, result.updated) == (40, 0)
    assert await store.instance_counts(T) == {"wf": {"Finished": 40, "Executing": 40}}
    logged = await store.changes_after(logged[-1].seq, limit=100)
    assert [(c.entity_id, c.op) for c in logged] == [(f"n{n}", ChangeOp.CREATE) for n in range(40)]


async def test_an_initial_walk_batch_made_ahead_writes_what_its_transaction_would(
    database_url: str,
) -> None:
    """A batch made ahead (`Store.new_rows`, in slices as the sync makes it) gathers what
    its rows add to the counts, trends and change log. Written, it leaves the mirror as
    the same batch written without being made ahead does (here on another tenant), and
    its change rows carry the time of the transaction that wrote them."""

    hour = (now_ms() // 3_600_000 - 1) * 3_600_000
    clock = [hour]
    store = Store.from_url(database_url, clock=lambda: clock[0])
    statuses = ["Running", "Finished", "Faulted", "Suspended"]
    writes = [
        instance(
            f"i{n}",
            f"wf{n % 3}",
            status=statuses[n % 4],
            created_at=hour + n * 7_000,
            updated_at=hour + n * 9_000,
            finished_at=hour + n * 9_000 if n % 4 == 1 else None,
            variables={"n": n},
        )
        for n in range(250)
    ]
    try:
        made = store.new_rows(T, "elsa", writes[:100])
        made.extend(store.new_rows(T, "elsa", writes[100:]))
        clock[0] = hour + 60_000  # the write's transaction begins a minute later
        batch = SyncBatch(source_id="elsa", instances=writes)
        ahead = await store.apply_sync_batch(T, batch, made)
        in_transaction = await store.apply_sync_batch(OTHER, batch)
        assert ahead == in_transaction
        assert (ahead.created, ahead.updated) == (250, 0)

        async def stored(tenant: str) -> list[dict[str, object]]:
            page = await store.list_instances(tenant, InstanceQuery(limit=500))
            return [i.model_dump(exclude={"tenant_id"}) for i in page.items]

        assert await stored(T) == await stored(OTHER) and len(await stored(T)) == 250
        assert await store.instance_counts(T) == await store.instance_counts(OTHER)
        window = TrendWindow(until=hour // MINUTE_MS + 60, step_minutes=5, slots=12)
        for definition_id in (None, "wf0", "wf2"):
            counted = await store.trend(T, definition_id, window)
            assert counted == await store.trend(OTHER, definition_id, window)
        assert sum(interval["started"] for interval in await store.trend(T, None, window)) == 250

        logged = await store.changes_after(0, limit=1_000)
        by_tenant = {
            tenant: [
                (c.entity_id, c.op, c.revision, c.at, {**c.data, "tenantId": None})
                for c in logged
                if c.tenant_id == tenant
            ]
            for tenant in (T, OTHER)
        }
        assert by_tenant[T] == by_tenant[OTHER]
        assert [entity_id for entity_id, *_ in by_tenant[T]] == [w.id for w in writes]
        assert {at for _, _, _, at, _ in by_tenant[T]} == {hour + 60_000}
    finally:
        await store.close()


async def test_batches_of_any_size_write_each_row_once_in_few_statement_lengths(
    store: Store,
) -> None:
    """A batch goes to SQLite as INSERTs of many rows each; the driver keeps each length
    of statement prepared, about 2 MB for 1,000 rows of instances, so the lengths come
    from a few sizes. Batches of awkward sizes still write every row once, in order."""
    sizes = [1, 3, 999, 1_000, 1_001, 1_537, 2_047]
    lengths = {length for size in range(1, 5_001) for length in statement_lengths(size, 1_000)}
    assert len(lengths) <= 11, "1,000 and the powers of two below it"
    written = 0
    for batch_number, size in enumerate(sizes):
        writes = [
            instance(f"b{batch_number}-{n:05d}", status="Running", created_at=1, updated_at=2)
            for n in range(size)
        ]
        batch = SyncBatch(source_id="elsa", instances=writes)
        result = await store.apply_sync_batch(T, batch, store.new_rows(T, "elsa", writes))
        assert result.created == size
        written += size
    assert await store.instance_counts(T) == {"wf": {"Executing": written}}
    logged = await store.changes_after(0, limit=10_000)
    assert [c.entity_id for c in logged] == [
        f"b{batch_number}-{n:05d}" for batch_number, size in enumerate(sizes) for n in range(size)
    ]


async def test_commit_listeners_hear_the_last_seq_after_commit(store: Store) -> None:
    heard: list[int] = []
    store.add_commit_listener(heard.append)
    await store.create_instance(T, instance("i1"))
    await store.update_instance(T, "i1", InstancePatch())  # no change: no notification
    await store.put_instances(T, [instance("i2"), instance("i3")])
    assert heard == [1, 3]
    assert await store.last_seq() == 3
    # A write's change rows take their seqs in the order it made them.
    ids = ["o4", "o1", "o3", "o0", "o2"]
    await store.put_instances(T, [instance(id, variables={"n": n}) for n, id in enumerate(ids)])
    logged = await store.changes_after(3, limit=10)
    assert [(change.seq, change.entity_id) for change in logged] == list(enumerate(ids, 4))
    assert [change.data["variables"] for change in logged] == [{"n": n} for n in range(5)]
    assert heard == [1, 3, 8]
    # So do a batch's, written in bulk (on PostgreSQL one array per column), with their
    # values as given: JSON with escapes, NULLs, 64-bit integers.
    ids = [f"b{(n * 37) % 100:02d}" for n in range(100)]
    variables = [{"n": n, "text": 'a "quoted" \\ line\nwith ü', "big": 2**62} for n in range(100)]
    writes = [
        instance(id, variables=vars, correlation_id=None if n % 2 else f"c{n}")
        for n, (id, vars) in enumerate(zip(ids, variables, strict=True))
    ]
    await store.put_instances(T, writes)
    logged = await store.changes_after(8, limit=200)
    assert [(change.seq, change.entity_id) for change in logged] == list(enumerate(ids, 9))
    assert [change.data["variables"] for change in logged] == variables
    stored = [await store.get_instance(T, id) for id in ids]
    assert [(i.variables, i.correlation_id) for i in stored if i is not None] == [
        (vars, None if n % 2 else f"c{n}") for n, vars in enumerate(variables)
    ]
    assert heard == [1, 3, 8, 108]


async def test_kept_counts_always_equal_counting_the_rows(store: Store) -> None:
    """Creates, updates across definitions and statuses, deletes, resurrections and batch
    duplicates: the kept counts stay equal to a GROUP BY over the live rows."""
    import random

    from tamma_sync.models import SyncBatch

    rng = random.Random(7)
    statuses = ["pending", "running", "Suspended", "completed", "failed", "Unknown"]
    for step in range(40):
        writes = [
            instance(
                f"i{rng.randrange(30)}",
                definition_id=rng.choice(["a", "b", "c"]),
                status=rng.choice(statuses),
            )
            for _ in range(rng.randrange(1, 8))
        ]
        if step % 3 == 0:
            await store.apply_sync_batch(
                T, SyncBatch(source_id=rng.choice(["s1", "s2"]), instances=writes)
            )
        else:
            await store.put_instances(T, writes)
        if step % 4 == 0:
            await store.delete_instances(T, [f"i{rng.randrange(30)}" for _ in range(3)])
        if step % 9 == 0:
            await store.delete_definitions(T, [rng.choice(["a", "b", "c"])])
        await store.update_instance(
            T, f"i{rng.randrange(30)}", InstancePatch(status=rng.choice(statuses))
        )

    everything = (await store.list_instances(T, InstanceQuery(limit=1000))).items
    expected = counted_by_definition(everything)
    assert await store.instance_counts(T) == expected
    per_source = await store.source_counts(T)
    for source in ("s1", "s2"):
        got = per_source.get(source, {}).get("instances", 0)
        assert got == sum(1 for item in everything if item.source_id == source)
    for definition in ("a", "b", "c"):
        filtered = await store.list_instances(T, InstanceQuery(definition_id=definition))
        assert filtered.total == sum(expected.get(definition, {}).values())
    totals: dict[str | None, int] = {}
    for group in expected.values():
        for key, count in group.items():
            totals[key] = totals.get(key, 0) + count
    assert (await store.catalog_totals(T)).instances == totals
    assert (await store.list_instances(T, InstanceQuery())).total == len(everything)
    for sub_status in (SubStatus.EXECUTING, SubStatus.FAULTED):
        page = await store.list_instances(T, InstanceQuery(sub_statuses=[sub_status]))
        assert page.total == totals.get(sub_status.value, 0)
    assert (await store.catalog_totals(OTHER)).instances == {}


async def test_catalog_totals_count_live_definitions_with_or_without_instances(
    store: Store,
) -> None:
    """The summary's definition count and instance totals come from one statement: the
    count must not depend on whether any instance exists, nor count another tenant's."""
    assert await store.catalog_totals(T) == CatalogTotals(definitions=0, instances={})
    flows = [DefinitionWrite(id=name, name=name) for name in ("a", "b", "c")]
    await store.upsert_definitions(T, flows)
    assert await store.catalog_totals(T) == CatalogTotals(definitions=3, instances={})
    await store.put_instances(
        T,
        [
            instance("i1", "a", status="running"),
            instance("i2", "b", status="completed"),
            instance("i3", "b", status="running"),
        ],
    )
    totals = CatalogTotals(definitions=3, instances={"Executing": 2, "Finished": 1})
    assert await store.catalog_totals(T) == totals
    await store.delete_definitions(T, ["c"])
    assert await store.catalog_totals(T) == CatalogTotals(definitions=2, instances=totals.instances)
    assert await store.catalog_totals(OTHER) == CatalogTotals(definitions=0, instances={})


async def test_change_snapshots_are_the_instance_as_the_api_shows_it(store: Store) -> None:
    full = instance(
        "full",
        status="Running",
        sub_status=SubStatus.SUSPENDED,
        current_activity="review",
        variables={"a": [1, {"b": None}]},
        correlation_id="c",
        name="n",
        incident_count=0,
        definition_version=3,
        definition_version_id="v3",
        created_at=5,
        updated_at=6,
    )
    for write in (full, instance("bare")):
        await store.create_instance(T, write)
        stored = await store.get_instance(T, write.id)
        assert stored is not None
        assert (await store.changes_after(0, entity_id=write.id))[-1].data == stored.to_wire()


async def test_a_page_shows_each_instance_as_reading_it_alone_does(store: Store) -> None:
    """Pages pass the stored variables through as JSON text: they must come out as the
    single read decodes them, whatever they hold."""
    variables = {"a": [1, {"b": None}], "ünï": "çødé ✓", "big": 2**62, "x": 1.5, "t": True}
    await store.put_instances(
        T, [instance("full", variables=variables, sub_status=SubStatus.FAULTED), instance("bare")]
    )
    for query in (InstanceQuery(), InstanceQuery(sub_statuses=[SubStatus.FAULTED])):
        page = await store.list_instances(T, query)
        for listed in orjson.loads(orjson.dumps(page.wire)):
            stored = await store.get_instance(T, listed["id"])
            assert stored is not None
            assert listed == stored.to_wire()
    [full] = (await store.list_instances(T, InstanceQuery(sub_statuses=[SubStatus.FAULTED]))).items
    assert full.variables == variables


async def test_a_page_read_that_fails_raises_as_every_other_read(store: Store) -> None:
    """Pages run through the driver, past SQLAlchemy: a database error must still come as
    SQLAlchemy's, which the API answers with 503 or a logged 500, never a raw driver error."""
    await store.put_instances(T, [instance("a")])
    async with store.sql_engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE instances RENAME TO instances_elsewhere"))
    with pytest.raises(sa.exc.DBAPIError) as caught:
        await store.list_instances(T, InstanceQuery())
    assert "instances" in str(caught.value.orig)


async def test_definition_json_is_never_stale(store: Store, database_url: str) -> None:
    """The definitions' encoded JSON is kept between listings: edits, deletions and
    re-creation — also by another process on the same database — show on the next one."""

    async def listed(tenant: str = T, *, compact: bool = False) -> list[dict[str, object]]:
        return [
            orjson.loads(json)
            for _, json in await store.list_definition_json(tenant, compact=compact)
        ]

    activities = [{"id": "a1", "type": "Elsa.WriteLine"}]
    await store.upsert_definitions(
        T, [DefinitionWrite(id="wf", name="One", activities=activities, variables=[{"n": 1}])]
    )
    await store.upsert_definitions(T, [DefinitionWrite(id="other", name="Other")])
    assert [(d["id"], d["name"]) for d in await listed()] == [("other", "Other"), ("wf", "One")]
    assert (await listed())[1]["activities"] == activities
    compact = (await listed(compact=True))[1]
    assert (compact["name"], "activities" in compact, "variables" in compact) == (
        "One",
        False,
        False,
    )

    replica = Store.from_url(database_url)  # another server on the same database
    try:
        await replica.upsert_definitions(T, [DefinitionWrite(id="wf", name="Two")])
        assert [d["name"] for d in await listed()] == ["Other", "Two"]
        assert (await listed())[1]["activities"] == activities, "fields not sent are kept"
        await replica.delete_definitions(T, ["wf"])
        assert [d["id"] for d in await listed()] == ["other"]
        await replica.upsert_definitions(T, [DefinitionWrite(id="wf", name="Three")])
    finally:
        await replica.close()
    assert [d["name"] for d in await listed()] == ["Other", "Three"]
    assert await listed(OTHER) == []
    assert await listed() == [d.to_wire() for d in await store.list_definitions(T)]

    # Listings arriving together after a change: one refreshes, the others use its work.
    await store.upsert_definitions(T, [DefinitionWrite(id="wf", name="Four")])
    together = await asyncio.gather(*(listed() for _ in range(8)))
    assert [[d["name"] for d in result] for result in together] == [["Other", "Four"]] * 8


async def test_reads_together_each_see_what_was_committed_before_them(store: Store) -> None:
    """Reads sharing one connection (the dashboard summary's) hold no snapshot between
    them: a write committed meanwhile shows in the next read."""
    await store.create_instance(T, instance("a", status="running"))
    async with store.reading_together():
        before = (await store.catalog_totals(T)).instances
        await store.create_instance(T, instance("b", status="running"))
        after = (await store.catalog_totals(T)).instances
        page = await store.list_instances(T, InstanceQuery())
    assert before == {"Executing": 1}
    assert after == {"Executing": 2}
    assert page.total == 2
    assert (await store.catalog_totals(T)).instances == {"Executing": 2}


async def test_catalog_revision_moves_on_with_every_catalog_change_and_only_then(
    store: Store,
) -> None:
    """Kept dashboard bodies trust it: whatever changes a definition or moves a count moves
    it on; writes that leave both as they were, and purges that remove nothing live, do not."""
    seen = [await store.catalog_revision()]

    async def moved() -> bool:
        seen.append(await store.catalog_revision())
        return seen[-1] != seen[-2]

    await store.upsert_definitions(T, [DefinitionWrite(id="wf", name="Flow")])
    assert await moved()
    await store.upsert_definitions(T, [DefinitionWrite(id="wf", name="Flow")])
    assert not await moved()
    ended = instance("done", status="finished", finished_at=1_000, updated_at=1_000)
    await store.put_instances(T, [ended, instance("running", status="running")])
    assert await moved()
    await store.put_instances(T, [ended])
    assert not await moved()
    await store.update_instance(T, "running", InstancePatch(status="suspended"))
    assert await moved()
    # Counts stay where they were: the catalog is unchanged.
    await store.update_instance(T, "running", InstancePatch(variables={"step": 2}))
    assert not await moved()
    await store.purge(PurgeCutoffs(tombstones=0, changes=0, engine_events=0))
    assert not await moved()
    # Retention's purge of ended instances moves their counts.
    await store.purge(PurgeCutoffs(tombstones=0, changes=0, engine_events=0, ended_instances=2_000))
    assert await moved()
    await store.delete_definitions(T, ["wf"])
    assert await moved()


async def test_a_sqlite_database_gets_planner_statistics_when_it_opens(
    sqlite_database_url: str,
) -> None:
    """SQLite plans by guesses until ANALYZE has run, and a guess read most of a million
    rows for a filtered page (docs/benchmarks.md): a database grown without statistics
    gets them, sampled, when the store opens it."""
    store = Store.from_url(sqlite_database_url)
    try:
        await store.migrate()
        await store.put_instances(T, [instance(f"i{n}", f"wf{n % 7}") for n in range(50)])
        async with store.sql_engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM sqlite_stat1"))
        await store.migrate()
        async with store.sql_engine.connect() as conn:
            analyzed = await conn.execute(
                sa.text("SELECT idx FROM sqlite_stat1 WHERE tbl = 'instances'")
            )
            indexes = {name for (name,) in analyzed}
        assert "ix_instances_definition_updated" in indexes
    finally:
        await store.close()


async def test_a_connection_back_in_the_pool_mid_transaction_holds_no_lock(
    sqlite_database_url: str,
) -> None:
    """SQLite: a read returns its connection without a rollback (it starts no transaction),
    but one given back inside a transaction — a write cut short before its own rollback —
    is rolled back, or it would hold the database's write lock and every later write would
    wait for it in vain."""
    store = Store.from_url(sqlite_database_url)
    try:
        async with store.sql_engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute("BEGIN IMMEDIATE")
            assert driver.in_transaction
        other = Store.from_url(sqlite_database_url)  # another process: no pool to share
        try:
            written, _ = await asyncio.wait_for(other.put_instances(T, [instance("i1")]), 5)
        finally:
            await other.close()
        assert [row.id for row in written] == ["i1"]
    finally:
        await store.close()
