"""TimeIndex: late stamps land at their place; counts, skips and scans stay exact."""

from __future__ import annotations

import random
from array import array

import pytest

from tamma_sync.simulator.instances import shuffle_ties
from tamma_sync.simulator.timeindex import TimeIndex


def expected(stamps: dict[int, tuple[int, int]]) -> list[int]:
    """Rows by (stamp, arrival): equal stamps keep the order they were placed in."""
    return sorted(stamps, key=stamps.__getitem__)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_out_of_order_places_keep_the_order_exact(seed: int) -> None:
    rng = random.Random(seed)
    index = TimeIndex(array("q"), array("q"), 0)
    stamps: dict[int, tuple[int, int]] = {}
    clock = 0
    for arrival in range(6000):
        clock += rng.randrange(3)
        row = rng.randrange(2500)
        if row in stamps and rng.random() < 0.1:
            index.remove(row)
            del stamps[row]
            continue
        # Mostly the newest stamp; a fifth arrive late (up to 40 ticks).
        late = rng.random() < 0.2
        ticks = clock - rng.randrange(40) if late else clock
        if row in stamps:
            ticks = max(ticks, stamps[row][0])  # one instance's stamps never go back
            index.move(row, ticks)
        else:
            index.place(row, ticks)
        stamps[row] = (ticks, arrival)
    want = expected(stamps)
    end = len(index.rows)
    assert list(index.scan(0, end, descending=False)) == want
    assert list(index.scan(0, end, descending=True)) == want[::-1]
    assert index.size == len(want) == index.count(0, end)
    assert list(index.live_rows_from_start()) == want
    for skip in (0, 1, 1023, 1024, 1500, len(want) - 1):
        assert list(index.scan(0, end, descending=False, skip=skip))[:3] == want[skip : skip + 3]
        assert (
            list(index.scan(0, end, descending=True, skip=skip))[:3] == want[::-1][skip : skip + 3]
        )
    low = stamps[want[len(want) // 3]][0]
    high = stamps[want[2 * len(want) // 3]][0]
    start, stop = index.bounds(low, high)
    inside = [row for row in want if low <= stamps[row][0] < high]
    assert list(index.scan(start, stop, descending=False)) == inside
    assert index.count(start, stop) == len(inside)
    assert all(index.ticks_of(row) == stamps[row][0] for row in want)


def test_shuffle_ties_only_reorders_equal_keys() -> None:
    rows = list(range(30))
    keys = [n // 10 for n in rows]  # three runs of ten equal keys
    seen: set[tuple[int, ...]] = set()
    for seed in range(5):
        page = shuffle_ties(rows, keys.__getitem__, 5, 10, random.Random(seed))
        assert [keys[row] for row in page] == [0] * 5 + [1] * 5
        assert len(set(page)) == 10
        seen.add(tuple(page))
    assert len(seen) > 1
    unique = list(range(8))
    assert shuffle_ties(unique, unique.__getitem__, 2, 3, random.Random(1)) == [2, 3, 4]


@pytest.mark.parametrize("seed", [4, 5])
def test_a_batch_lands_as_if_placed_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    one_by_one = TimeIndex(array("q"), array("q"), 0)
    batched = TimeIndex(array("q"), array("q"), 0)
    clock = 0
    stamps: dict[int, int] = {}
    for row in range(3000):
        clock += rng.randrange(2)
        one_by_one.place(row, clock)
        batched.place(row, clock)
        stamps[row] = clock
    for _ in range(5):
        batch: dict[int, int] = {}
        for _ in range(rng.randrange(1, 400)):
            row = rng.randrange(3600)
            ticks = max(clock - rng.randrange(300), stamps.get(row, 0), batch.get(row, 0))
            batch.pop(row, None)
            batch[row] = ticks
        for row in batch:
            one_by_one.remove(row)
            batched.remove(row)
        for row, ticks in batch.items():
            one_by_one.place(row, ticks)
        batched.place_many(batch.items())
        stamps |= batch
        clock += 50
        end_a, end_b = len(one_by_one.rows), len(batched.rows)
        assert list(batched.scan(0, end_b, descending=False)) == list(
            one_by_one.scan(0, end_a, descending=False)
        )
        assert batched.count(0, end_b) == one_by_one.size == batched.size
        assert (
            list(batched.scan(0, end_b, descending=True, skip=1100))[:5]
            == list(one_by_one.scan(0, end_a, descending=True, skip=1100))[:5]
        )
