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
    assert added == 10
    kept, total = await store.engine_events_page(T, "e", limit=50)
    assert total == 3
    assert [event.id for event in kept] == ["e0", "e1", "e2"]
    assert await store.add_engine_events(T, "ghost", events, keep=3, max_age_ms=DAY_MS) is None
