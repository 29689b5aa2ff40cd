"""Trends: what instance writes add to the started/finished/faulted rollups, on both
databases, and what migration 0012 fills them with from instances mirrored before."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from tamma_sync.models import DEFAULT_TENANT_ID, InstanceWrite, now_ms
from tamma_sync.store import Store
from tamma_sync.store.migrations import alembic_config
from tamma_sync.store.trends import MINUTE_MS, TrendWindow

T = DEFAULT_TENANT_ID
#: The hour before the last: recent enough for every span's rollups to be kept.
T0 = (now_ms() // 3_600_000 - 1) * 3_600_000
MINUTE0 = T0 // MINUTE_MS
#: The five minutes from T0, one interval each.
FIVE_MINUTES = TrendWindow(until=MINUTE0 + 5, step_minutes=1, slots=5)


def instance(id: str, definition_id: str = "wf", **fields: object) -> InstanceWrite:
    return InstanceWrite.model_validate({"id": id, "definition_id": definition_id, **fields})


def at(minutes: float) -> int:
    return T0 + int(minutes * MINUTE_MS)


async def series(store: Store, definition_id: str | None = None) -> dict[str, list[int]]:
    counted = await store.trend(T, definition_id, FIVE_MINUTES)
    return {kind: [interval[kind] for interval in counted] for kind in counted[0]}


async def test_writes_count_starts_finishes_and_faults_at_the_sources_times(
    store: Store,
) -> None:
    await store.put_instances(
        T,
        [
            instance("a", createdAt=at(0), updatedAt=at(0.5), subStatus="Executing"),
            instance(
                "b", createdAt=at(1), updatedAt=at(2.2), finishedAt=at(2.1), subStatus="Finished"
            ),
            # No finishedAt: its fault counts when it was last updated.
            instance("c", createdAt=at(0.2), updatedAt=at(3), subStatus="Faulted"),
            instance("d", "other", createdAt=at(0), updatedAt=at(0), subStatus="Suspended"),
        ],
    )
    assert await series(store) == {
        "started": [3, 1, 0, 0, 0],
        "finished": [0, 0, 1, 0, 0],
        "faulted": [0, 0, 0, 1, 0],
    }
    assert (await series(store, "wf"))["started"] == [2, 1, 0, 0, 0]
    assert await series(store, "other") == {
        "started": [1, 0, 0, 0, 0],
        "finished": [0] * 5,
        "faulted": [0] * 5,
    }
    assert (await series(store, "nothing-like-it"))["started"] == [0] * 5

    # Writing the same again, or moving it along while running, adds nothing.
    await store.put_instances(
        T, [instance("a", createdAt=at(0), updatedAt=at(0.5), subStatus="Executing")]
    )
    await store.put_instances(
        T, [instance("a", createdAt=at(0), updatedAt=at(1.5), subStatus="Suspended")]
    )
    before = await series(store)
    assert before["started"] == [3, 1, 0, 0, 0]

    # Its end counts once, however often it is written ended.
    for updated in (at(4.5), at(4.6)):
        await store.put_instances(
            T, [instance("a", createdAt=at(0), updatedAt=updated, subStatus="Finished")]
        )
    assert (await series(store))["finished"] == [0, 0, 1, 0, 1]
    assert (await series(store, "wf"))["finished"] == [0, 0, 1, 0, 1]

    # Deleting takes nothing back; an instance written again after is new to the mirror.
    assert await store.delete_instance(T, "b")
    assert await series(store) == {
        "started": [3, 1, 0, 0, 0],
        "finished": [0, 0, 1, 0, 1],
        "faulted": [0, 0, 0, 1, 0],
    }
    await store.put_instances(T, [instance("b", createdAt=at(3.5), updatedAt=at(3.5))])
    assert (await series(store))["started"] == [3, 1, 0, 1, 0]


async def test_intervals_sum_their_minutes_and_other_tenants_stay_apart(store: Store) -> None:
    await store.put_instances(
        T, [instance(f"i{n}", createdAt=at(n), updatedAt=at(n)) for n in range(10)]
    )
    await store.put_instances("tenant-b", [instance("x", createdAt=at(0), updatedAt=at(0))])
    window = TrendWindow(until=MINUTE0 + 10, step_minutes=5, slots=3)
    assert window.since == MINUTE0 - 5
    counted = await store.trend(T, None, window)
    assert [interval["started"] for interval in counted] == [0, 5, 5]
    assert [i["started"] for i in await store.trend("tenant-b", None, window)] == [0, 1, 0]

    # Whole hours are read from the hourly rollups, half hours from the quarter hours'.
    hour = MINUTE0 // 60
    hourly = TrendWindow(until=(hour + 2) * 60, step_minutes=60, slots=3)
    assert hourly.span == 60
    by_minutes = TrendWindow(until=(hour + 2) * 60, step_minutes=30, slots=6)
    assert by_minutes.span == 15
    halves = [interval["started"] for interval in await store.trend(T, None, by_minutes)]
    assert sum(halves) == 10
    assert [interval["started"] for interval in await store.trend(T, None, hourly)] == [
        0,
        halves[2] + halves[3],
        halves[4] + halves[5],
    ]


async def test_0012_fills_the_trends_from_the_instances_present(
    empty_database_url: str,
) -> None:
    """Instances mirrored before 0012, deleted ones too, chart as if written since."""
    store = Store.from_url(empty_database_url)
    try:
        async with store.sql_engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0011"))
            rows = [
                ("a", "wf", at(0), at(0.5), None, "Executing", None),
                ("b", "wf", at(1), at(3), at(2), "Finished", None),
                ("c", "other", at(0), at(4), None, "Faulted", at(4.5)),
            ]
            for id_, definition, created, updated, finished, sub_status, deleted in rows:
                await conn.execute(
                    sa.text(
                        "INSERT INTO instances (tenant_id, id, definition_id, sub_status, "
                        "variables, created_at, updated_at, finished_at, revision, "
                        "content_hash, deleted_at) VALUES (:t, :id, :d, :s, '{}', :c, :u, :f, "
                        "1, 'h', :x)"
                    ),
                    {
                        "t": T,
                        "id": id_,
                        "d": definition,
                        "s": sub_status,
                        "c": created,
                        "u": updated,
                        "f": finished,
                        "x": deleted,
                    },
                )
        await store.migrate()
        assert await series(store) == {
            "started": [2, 1, 0, 0, 0],
            "finished": [0, 0, 1, 0, 0],
            "faulted": [0, 0, 0, 0, 1],
        }
        assert (await series(store, "other"))["faulted"] == [0, 0, 0, 0, 1]
        assert (await series(store, "wf"))["started"] == [1, 1, 0, 0, 0]
        hour = TrendWindow(until=(MINUTE0 // 60 + 1) * 60, step_minutes=60, slots=1)
        assert await store.trend(T, None, hour) == [{"started": 3, "finished": 1, "faulted": 1}]
    finally:
        await store.close()
