"""Engine events are kept by count and by age."""

from __future__ import annotations

import asyncio

from tamma_sync.models import DEFAULT_TENANT_ID, EngineEventWrite, EngineReport, now_ms
from tamma_sync.store import Store

T = DEFAULT_TENANT_ID
DAY_MS = 86_400_000


async def test_events_trimmed_to_the_newest_and_by_age(store: Store) -> None:
    await store.put_engine(T, "e", EngineReport(state="IDLE"))
    now = now_ms()
    events = [
        EngineEventWrite(id=f"e{n}", type="STATE_TRANSITION", timestamp=now - n) for n in range(10)
    ]
    events.append(EngineEventWrite(id="ancient", type="PR_MERGED", timestamp=now - 40 * DAY_MS))
    added = await store.add_engine_events(T, "e", events, keep=3, max_age_ms=30 * DAY_MS)
    kept, total = await store.engine_events_page(T, "e", limit=50)
    assert total == 3
    assert [event.id for event in kept] == ["e0", "e1", "e2"]
    assert added == 3, "only the events kept count as added"
    assert await store.add_engine_events(T, "ghost", events, keep=3, max_age_ms=DAY_MS) is None


async def test_an_event_older_than_the_kept_ones_is_not_counted(store: Store) -> None:
    await store.put_engine(T, "e", EngineReport(state="IDLE"))
    now = now_ms()
    newest = [EngineEventWrite(id=f"new{n}", type="PR_MERGED", timestamp=now - n) for n in range(3)]
    assert await store.add_engine_events(T, "e", newest, keep=3, max_age_ms=DAY_MS) == 3
    older = [EngineEventWrite(id="older", type="PR_MERGED", timestamp=now - 10)]
    assert await store.add_engine_events(T, "e", older, keep=3, max_age_ms=DAY_MS) == 0
    newer = [EngineEventWrite(id="newer", type="PR_MERGED", timestamp=now + 1)]
    assert await store.add_engine_events(T, "e", newer, keep=3, max_age_ms=DAY_MS) == 1
    kept, _ = await store.engine_events_page(T, "e", limit=50)
    assert [event.id for event in kept] == ["newer", "new0", "new1"]


async def test_the_overview_gives_the_newest_events_of_every_engine_and_their_liveness(
    store: Store,
) -> None:
    """The dashboard summary's events: newest first across engines, events of the same
    instant newest stored first, as many as asked; engines counted online or offline."""
    now = now_ms()
    await store.put_engine(T, "a", EngineReport(state="IDLE", heartbeat_interval_seconds=10))
    await store.put_engine(T, "b", EngineReport(state="IDLE", heartbeat_interval_seconds=1e-6))
    same = [EngineEventWrite(id=f"same{n}", type="PR_MERGED", timestamp=now) for n in range(3)]
    await store.add_engine_events(T, "a", same, keep=10, max_age_ms=DAY_MS)
    older = [EngineEventWrite(id="older", type="PR_MERGED", timestamp=now - 5)]
    await store.add_engine_events(T, "b", older, keep=10, max_age_ms=DAY_MS)
    newest = [EngineEventWrite(id="newest", type="PR_MERGED", timestamp=now + 5)]
    await store.add_engine_events(T, "b", newest, keep=10, max_age_ms=DAY_MS)
    await asyncio.sleep(0.01)  # b's heartbeat interval is a microsecond: it is offline now

    overview = await store.overview(T, recent_events=4)
    assert [(event.id, event.engine_id) for event in overview.recent_events] == [
        ("newest", "b"),
        ("same2", "a"),
        ("same1", "a"),
        ("same0", "a"),
    ]
    assert (overview.engines_online, overview.engines_offline) == (1, 1)
    assert (await store.overview("another tenant", recent_events=4)).recent_events == []
