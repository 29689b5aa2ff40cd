"""Retention: a background job that keeps the database from growing without end."""

from __future__ import annotations

import asyncio
import logging

from tamma_sync.models import now_ms
from tamma_sync.settings import DAY_MS, Settings
from tamma_sync.store import PurgeCutoffs, Store, describe_database_error

log = logging.getLogger(__name__)


def cutoffs(settings: Settings, now: int) -> PurgeCutoffs:
    """What is old enough to go, as of `now`, by the retention settings."""
    kept_ended = settings.keep_ended_instances_ms
    return PurgeCutoffs(
        tombstones=now - round(settings.retention_tombstones_days * DAY_MS),
        changes=now - round(settings.retention_changes_days * DAY_MS),
        engine_events=now - round(settings.engine_events_max_age_days * DAY_MS),
        ended_instances=None if kept_ended is None else now - kept_ended,
        trends_now=now,
    )


class RetentionService:
    """Purges by the retention settings every `retention_interval` seconds."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.retention_interval)
            try:
                await self.purge_once()
            except Exception as exc:  # the database may be away: next time
                log.warning("retention: purge failed: %s", describe_database_error(exc))

    async def purge_once(self) -> dict[str, int]:
        purged = await self._store.purge(cutoffs(self._settings, now_ms()))
        if any(purged.values()):
            log.info(
                "retention: purged %s",
                ", ".join(f"{count} {name}" for name, count in purged.items() if count),
            )
        return purged
