"""Offset pages deeper than the anchors' step (started from remembered anchors) hold exactly
the rows OFFSET would, and the total of their listing, before and after writes — this
process's and another's — that move every row's position."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tamma_sync.models import DEFAULT_TENANT_ID, InstanceWrite
from tamma_sync.store import InstanceQuery, Store
from tamma_sync.store.anchors import ANCHOR_STEP

T = DEFAULT_TENANT_ID
COUNT = 2 * ANCHOR_STEP + 500
#: Offsets around the anchors, the last row, and past the end.
OFFSETS = [ANCHOR_STEP, ANCHOR_STEP + 7, 2 * ANCHOR_STEP - 3, 2 * ANCHOR_STEP, COUNT - 1, COUNT]


def write(number: int, created_at: int, updated_at: int) -> InstanceWrite:
    return InstanceWrite(
        id=f"i-{number:05d}",
        definition_id=f"wf-{number % 2}",
        status="Running",
        # Every third shares its createdAt with the next: ties ordered by id.
        created_at=created_at,
        updated_at=updated_at,
    )


@pytest.fixture
async def other_process(database_url: str) -> AsyncIterator[Store]:
    """A second store on the same database: another process's writes, of which this one
    hears nothing."""
    other = Store.from_url(database_url)
    try:
        yield other
    finally:
        await other.close()


async def page_ids(store: Store, offset: int, **query: object) -> tuple[list[str], int | None]:
    page = await store.list_instances(T, InstanceQuery(offset=offset, limit=20, **query))  # type: ignore[arg-type]
    return [item["id"] for item in page.wire], page.total


def expected_ids(
    rows: dict[str, tuple[int, int, str]], offset: int, **query: object
) -> tuple[list[str], int]:
    """The page as OFFSET over the rows as written would give it, and how many match."""
    at = 1 if query.get("order_by") == "updatedAt" else 0
    since = query.get("created_since")
    kept = [
        (row[at], instance_id)
        for instance_id, row in rows.items()
        if query.get("definition_id") in (None, row[2])
        and (not isinstance(since, int) or row[0] >= since)
    ]
    kept.sort(reverse=bool(query.get("descending")))
    return [instance_id for _, instance_id in kept[offset : offset + 20]], len(kept)


async def test_deep_offset_pages_follow_every_write(store: Store, other_process: Store) -> None:
    rows: dict[str, tuple[int, int, str]] = {}
    writes = [write(n, 1_000 + n // 2 * 10, 5_000_000 - n) for n in range(COUNT)]
    await store.put_instances(T, writes)
    rows.update({w.id: (w.created_at or 0, w.updated_at or 0, w.definition_id) for w in writes})
    listings: list[dict[str, object]] = [
        {},
        {"definition_id": "wf-1"},
        {"order_by": "updatedAt", "descending": True},
        # A filter the kept counts are not kept by: the total counts the rows.
        {"created_since": 1_000 + 100 * 10},
    ]

    async def check(label: str) -> None:
        for query in listings:
            for offset in OFFSETS:
                # Twice: the second starts from an anchor the first left (the
                # step's, and the one at the page's own first row, with the total).
                for _ in range(2):
                    got = await page_ids(store, offset, **query)
                    assert got == expected_ids(rows, offset, **query), (label, query, offset)

    await check("as loaded")
    # Another process adds the earliest instance: every row moves one position on.
    first = write(99_999, 1, 9_000_000)
    await other_process.put_instances(T, [first])
    rows[first.id] = (1, 9_000_000, "wf-1")
    await check("one added before all others by another process")
    # This process deletes one near the start, and updates one to the most recent.
    assert await store.delete_instance(T, "i-00003")
    del rows["i-00003"]
    await store.put_instances(T, [write(1500, 1_000 + 750 * 10, 9_500_000)])
    rows["i-01500"] = (1_000 + 750 * 10, 9_500_000, "wf-0")
    await check("one deleted, one updated")
