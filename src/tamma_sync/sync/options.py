"""How a sync cycle runs (`SyncOptions`: page size, details policy and concurrency,
look-back, sweep budget, ended instances' retention) and what one did (`CycleReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tamma_sync.elsa import ElsaClient, InstanceSummary, sub_status
from tamma_sync.models import ENDED_SUB_STATUSES
from tamma_sync.settings import DetailsPolicy, Settings, SourceSettings
from tamma_sync.store import WriteResult


@dataclass(frozen=True)
class SyncOptions:
    page_size: int = 1_000
    details: DetailsPolicy = DetailsPolicy.ACTIVE
    details_concurrency: int = 8
    details_max_age: float = 120.0
    lookback: float = 10.0
    reconcile_interval: float = 5.0
    reconcile_share: float = 0.1
    system_workflows: bool = False
    max_backoff: float = 60.0
    #: How long after it finished retention purges an ended instance from the mirror, in
    #: ms (None: never).
    keep_ended_ms: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncOptions:
        return cls(
            page_size=settings.sync_page_size,
            details=settings.sync_details,
            details_concurrency=settings.sync_details_concurrency,
            details_max_age=settings.details_max_age,
            lookback=settings.lookback,
            reconcile_interval=settings.reconcile_interval,
            reconcile_share=settings.reconcile_share,
            system_workflows=settings.include_system_workflows,
            keep_ended_ms=settings.keep_ended_instances_ms,
        )

    def client_for(self, source: SourceSettings) -> ElsaClient:
        """The ELSA client a sync with these options reads `source` with."""
        return ElsaClient.from_settings(
            source, page_size=self.page_size, system_workflows=self.system_workflows
        )


def purged_by_retention(row: InstanceSummary, now: int, keep_ended_ms: int | None) -> bool:
    """Whether retention purges `row` from the mirror as of `now` (epoch ms): ended, and
    finished more than `keep_ended_ms` before (None: kept for ever)."""
    if keep_ended_ms is None or row.finished_at is None:
        return False
    ended = sub_status(row.sub_status) in ENDED_SUB_STATUSES
    return ended and row.finished_at.epoch_ms < now - keep_ended_ms


@dataclass
class CycleReport:
    """What one cycle did."""

    written: WriteResult = field(default_factory=WriteResult)
    details_fetched: int = 0
    refreshed: int = 0
    rejected: int = 0
    reconciled: bool = False
    error: str | None = None
