"""Engine events are kept by count and by age."""

from __future__ import annotations

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
