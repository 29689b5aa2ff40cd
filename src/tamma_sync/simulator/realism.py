"""How much a simulator behaves like a live, busy production ELSA instead of a quiet one.

Every behaviour is off by default (`Realism()`: the quiet simulator, where each change is
visible at once, in timestamp order, and moves `updatedAt`). `LIVE_REALISM` turns them all
on at rates seen on a busy server. Each field names the elsa-core code it reproduces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Final, Self


@dataclass(frozen=True, slots=True)
class Realism:
    """Production behaviours of ELSA a mirror has to cope with (all off by default)."""

    #: Each commit (create, progress, cancel, status-free commit) is stamped when made and
    #: becomes visible after a seeded random delay in [0, commit_lag] of real time, so
    #: commits become visible out of stamp order (one instance's commits stay in order).
    #: ELSA stamps `UpdatedAt` in memory (WorkflowExecutionContext.TransitionTo), publishes
    #: notifications and only then commits (WorkflowRunner.RunAsync).
    commit_lag: timedelta = timedelta(0)
    #: Commits stay pending until `flush_commits()` (deterministic tests).
    manual_commits: bool = False
    #: Share of `step()` steps that are status-free commits of a running instance
    #: (variables change, a suspended bookmark may move on; `updatedAt` does not move).
    silent_share: float = 0.0
    #: Share of `step()` steps that delete an instance (oldest ended ones first, like the
    #: retention cleanup job; sometimes a random one).
    delete_share: float = 0.0
    #: Rows with equal sort keys come back in a different order on each request, and the
    #: clock sometimes repeats its previous stamp.
    ties: bool = False
    #: Add ELSA's `Elsa.Alterations.ExecuteAlterationPlan` system workflow and some
    #: instances of it (from ELSA 3.1, which introduced system workflows).
    system_workflows: bool = False
    #: Suspended seeded instances whose detail routes answer 500 for good.
    poisoned_details: int = 0

    def __post_init__(self) -> None:
        if self.commit_lag < timedelta(0):
            raise ValueError("commit_lag must not be negative")
        for name in ("silent_share", "delete_share"):
            share = getattr(self, name)
            if not (math.isfinite(share) and 0.0 <= share <= 1.0):
                raise ValueError(f"{name} must be within [0, 1]")
        if self.silent_share + self.delete_share > 1.0:
            raise ValueError("silent_share + delete_share must not exceed 1")
        if self.poisoned_details < 0:
            raise ValueError("poisoned_details must not be negative")

    @property
    def delays_commits(self) -> bool:
        """Whether commits can be pending (a lag, or manual flushing)."""
        return self.manual_commits or self.commit_lag > timedelta(0)

    def tuned(
        self,
        *,
        commit_lag: timedelta | None = None,
        silent_share: float | None = None,
        delete_share: float | None = None,
        ties: bool | None = None,
        system_workflows: bool | None = None,
        poisoned_details: int | None = None,
    ) -> Self:
        """This realism with the given behaviours overridden (None keeps one)."""
        return replace(
            self,
            commit_lag=self.commit_lag if commit_lag is None else commit_lag,
            silent_share=self.silent_share if silent_share is None else silent_share,
            delete_share=self.delete_share if delete_share is None else delete_share,
            ties=self.ties if ties is None else ties,
            system_workflows=self.system_workflows
            if system_workflows is None
            else system_workflows,
            poisoned_details=self.poisoned_details
            if poisoned_details is None
            else poisoned_details,
        )


#: The quiet simulator (every behaviour off), the default.
QUIET_REALISM: Final = Realism()

#: A live, busy production ELSA: commits land up to 1.5 s late, 15% of steps are
#: status-free commits, 10% are deletions, ties are shuffled, system workflows run and one
#: instance's details are broken.
LIVE_REALISM: Final = Realism(
    commit_lag=timedelta(seconds=1.5),
    silent_share=0.15,
    delete_share=0.1,
    ties=True,
    system_workflows=True,
    poisoned_details=1,
)


class RealismProfile(StrEnum):
    """Named realism presets (the CLI's `--realism`)."""

    quiet = "quiet"
    live = "live"

    @property
    def realism(self) -> Realism:
        """The preset."""
        return LIVE_REALISM if self is RealismProfile.live else QUIET_REALISM


#: Share of clock ticks that repeat the previous stamp when `ties` is on.
TIE_REPEAT_SHARE: Final = 0.15
