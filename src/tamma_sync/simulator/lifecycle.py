"""How an instance moves on: ELSA's sub-status lifecycle as the simulator walks it.

Pending -> Executing -> Suspended (bookmark at a wait activity) -> Executing (next wait,
or a retry: `retryCount`+1) -> ... -> Finished; Executing may fault, Suspended may be
cancelled, too many retries fault.
"""

from __future__ import annotations

from tamma_sync.simulator.instances import SubStatus
from tamma_sync.simulator.values import MAX_RETRIES


def natural_next(
    current: SubStatus, stage: int, retries: int, waits: int, roll: float
) -> tuple[SubStatus, int, int]:
    """A random next (sub-status, stage, retries) of a running instance; `roll` in [0, 1)."""
    if current is SubStatus.Pending:
        return SubStatus.Executing, 0, retries
    if current is SubStatus.Executing:
        if stage >= waits:
            return SubStatus.Finished, waits, retries
        return (SubStatus.Faulted if roll < 0.06 else SubStatus.Suspended), stage, retries
    if roll < 0.04:
        return SubStatus.Cancelled, stage, retries
    if roll < 0.24:
        retries += 1
        faulted = retries > MAX_RETRIES
        return (SubStatus.Faulted if faulted else SubStatus.Executing), stage, retries
    return SubStatus.Executing, stage + 1, retries


def forced_next(current: SubStatus, target: SubStatus, stage: int, waits: int) -> int:
    """The stage after moving a running instance to `target` (ValueError for Pending)."""
    if target is SubStatus.Pending:
        raise ValueError("an instance cannot go back to Pending")
    if target is SubStatus.Executing and current is SubStatus.Suspended:
        return min(stage + 1, waits)
    if target is SubStatus.Suspended:
        return min(stage, waits - 1)
    if target is SubStatus.Finished:
        return waits
    return stage


def silent_next(current: SubStatus, stage: int, waits: int, move: bool) -> int | None:
    """The stage after a status-free commit (None: the instance cannot have one). A
    suspended instance's bookmark may move on to the next wait (`move`)."""
    if current not in (SubStatus.Executing, SubStatus.Suspended):
        return None
    if move and current is SubStatus.Suspended and stage + 1 < waits:
        return stage + 1
    return stage
