"""What `bench.sync_live` measures, from the simulator's side and from a mirror's tables.

A mirror is read directly (`instances`, `changes`, `sync_state`; the schema is the same
at the commit of today's sync), never through the API. Times are wall-clock epoch
milliseconds on both sides: the simulator's monotonic stamps are converted once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from bench._common import percentile
from tamma_sync.elsa import ElsaTimestamp
from tamma_sync.settings import normalize_database_url
from tamma_sync.simulator import CommitEvent, ElsaSimulator, Snapshot
from tamma_sync.store import Store
from tamma_sync.store.tables import changes, instances, sync_state

RUNNING = ("Pending", "Executing", "Suspended")
NEVER = math.inf
#: Instances per `snapshot()` call: the simulator's lock is held for one window at a time.
SNAPSHOT_WINDOW = 1_000

#: An instance's details as ELSA tells them: current activity, and variables (None where
#: ELSA cannot tell them: the mirror then keeps what it saw last).
Details = tuple[str | None, dict[str, Any] | None]


def elsa_ms(text: str) -> int:
    """ELSA's timestamp text in epoch ms, through the parser the mirror uses."""
    return ElsaTimestamp.parse(text).epoch_ms


class WallClock:
    """Converts `time.monotonic()` stamps to wall-clock epoch ms (the mirror's `at`)."""

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()

    def ms(self, monotonic: float) -> float:
        return (monotonic + self._offset) * 1000


# -- the mirror --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorRow:
    """A live row of a mirror's `instances`."""

    definition_id: str
    sub_status: str | None
    updated_at: int
    current_activity: str | None
    variables: Any


@dataclass(frozen=True)
class Change:
    """One row of a mirror's change log for an instance."""

    at: int
    op: str
    updated_at: int | None
    sub_status: str | None


class Mirror:
    """One sync's database, read as it is written."""

    def __init__(self, database_url: str) -> None:
        self._store = Store.from_url(normalize_database_url(database_url), pool_size=2)

    async def close(self) -> None:
        await self._store.close()

    async def rows(self, *, running_only: bool = False) -> dict[str, MirrorRow]:
        """Live instances (only running ones with `running_only`)."""
        query = sa.select(
            instances.c.id,
            instances.c.definition_id,
            instances.c.sub_status,
            instances.c.updated_at,
            instances.c.current_activity,
            instances.c.variables,
        ).where(instances.c.deleted_at.is_(None))
        if running_only:
            query = query.where(instances.c.sub_status.in_(RUNNING))
        async with self._store.sql_engine.connect() as conn:
            result = await conn.execute(query)
            return {row[0]: MirrorRow(*row[1:]) for row in result}

    async def history(self) -> dict[str, list[Change]]:
        """Every instance change, per instance, in the order written."""
        query = (
            sa.select(changes.c.entity_id, changes.c.at, changes.c.op, changes.c.data)
            .where(changes.c.entity == "instance")
            .order_by(changes.c.seq)
        )
        found: dict[str, list[Change]] = {}
        async with self._store.sql_engine.connect() as conn:
            for entity_id, at, op, data in await conn.execute(query):
                updated = data.get("updatedAt") if isinstance(data, dict) else None
                status = data.get("subStatus") if isinstance(data, dict) else None
                found.setdefault(entity_id, []).append(Change(at, op, updated, status))
        return found

    async def state(self) -> dict[str, Any]:
        """The source's sync state (camelCase JSON); empty before the first cycle, and
        before the sync created the schema."""
        try:
            async with self._store.sql_engine.connect() as conn:
                value = (await conn.execute(sa.select(sync_state.c.state))).scalar()
        except sa.exc.DBAPIError:
            return {}
        return value if isinstance(value, dict) else {}


# -- the truth ---------------------------------------------------------------------------------


def running_truth(simulator: ElsaSimulator, poisoned: set[str]) -> dict[str, Details]:
    """Running instances' details as ELSA tells them now (system and poisoned ones left
    out), read in windows so that ELSA keeps answering in between."""
    found: dict[str, Details] = {}
    offset = 0
    while True:
        window = simulator.snapshot(offset=offset, limit=SNAPSHOT_WINDOW).instances
        for truth in window.values():
            if truth.status == "Running" and not truth.is_system and truth.id not in poisoned:
                found[truth.id] = (truth.current_activity, truth.variables)
        offset += len(window)
        if len(window) < SNAPSHOT_WINDOW:
            return found


def same_details(row: MirrorRow, details: Details) -> bool:
    activity, variables = details
    return row.current_activity == activity and (variables is None or row.variables == variables)


@dataclass
class Staleness:
    """How long each running instance's details have differed from ELSA's, sampled: an
    instance's age is the time since the first sample that found it different (0 when
    it matches); instances the mirror lacks are the lag's business, not counted here."""

    since: dict[str, float] = field(default_factory=dict)
    ages: list[float] = field(default_factory=list)
    samples: int = 0
    differing: int = 0

    def observe(self, now: float, truth: dict[str, Details], mirror: dict[str, MirrorRow]) -> None:
        self.samples += 1
        for instance_id, details in truth.items():
            row = mirror.get(instance_id)
            if row is None or same_details(row, details):
                self.since.pop(instance_id, None)
                if row is not None:
                    self.ages.append(0.0)
                continue
            self.differing += 1
            self.ages.append(now - self.since.setdefault(instance_id, now))
        for instance_id in [key for key in self.since if key not in truth]:
            del self.since[instance_id]

    def figures(self) -> dict[str, float]:
        return {
            "samples": self.samples,
            "observations": len(self.ages),
            "differing_share": self.differing / len(self.ages) if self.ages else 0.0,
            "max_s": max(self.ages, default=0.0),
            "p99_s": percentile(self.ages, 0.99) if self.ages else 0.0,
            "p50_s": percentile(self.ages, 0.50) if self.ages else 0.0,
        }


# -- figures from the change log ---------------------------------------------------------------


#: How many of the slowest cases the raw figures keep.
SLOWEST = 10


def spread(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of durations where NEVER stands for "did not happen"."""
    if not seconds:
        return {"n": 0}
    finite = [value for value in seconds if value != NEVER]
    capped = [1e15 if value == NEVER else value for value in seconds]
    return {
        "n": len(seconds),
        "never": len(seconds) - len(finite),
        "p50": _uncap(percentile(capped, 0.50)),
        "p99": _uncap(percentile(capped, 0.99)),
        "max": _uncap(max(capped)),
        "max_seen": max(finite, default=math.nan),
    }


def _uncap(value: float) -> float:
    return NEVER if value > 1e12 else value


def _reflected_at(history: Iterable[Change], updated_at: int, sub_status: str) -> int | None:
    """When the mirror first held this state of the instance, or a later one."""
    for change in history:
        if change.op == "delete" or change.updated_at is None:
            continue
        if change.updated_at > updated_at or (
            change.updated_at == updated_at and change.sub_status == sub_status
        ):
            return change.at
    return None


def commit_lags(
    commits: Iterable[CommitEvent],
    history: dict[str, list[Change]],
    deleted: Container[str],
    clock: WallClock,
) -> dict[str, Any]:
    """Seconds from each commit becoming visible in ELSA to the mirror holding that state
    (or a later one); NEVER for one it never held. A commit the mirror never held of an
    instance ELSA deleted since is left out (the deletion superseded it)."""
    lags: list[tuple[float, float, str]] = []
    superseded = 0
    for commit in commits:
        at = _reflected_at(
            history.get(commit.instance_id, ()), elsa_ms(commit.updated_at), commit.sub_status
        )
        if at is not None:
            lag = (at - clock.ms(commit.visible_at)) / 1000
        elif commit.instance_id in deleted:
            superseded += 1
            continue
        else:
            lag = NEVER
        lags.append((lag, commit.visible_at, commit.instance_id))
    return {
        **spread([lag for lag, _, _ in lags]),
        "superseded": superseded,
        "slowest": _slowest(lags),
    }


def _slowest(cases: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The slowest cases (seconds, monotonic time it began, instance), NEVER as -1."""
    cases = sorted(cases, reverse=True)[:SLOWEST]
    return [(-1.0 if lag == NEVER else lag, began, key) for lag, began, key in cases]


def deletion_lags(
    deleted: dict[str, tuple[float, float]],
    history: dict[str, list[Change]],
    listed: set[str],
) -> dict[str, Any]:
    """Seconds from a deletion in ELSA (`deleted`: monotonic time and wall ms) to the
    mirror's delete, for the instances the mirror had held; NEVER for one it still lists
    or never deleted."""
    lags: list[tuple[float, float, str]] = []
    never_held = resurrected = 0
    for instance_id, (began, when) in deleted.items():
        changes_of = history.get(instance_id, [])
        if not any(change.op != "delete" for change in changes_of):
            never_held += 1
            continue
        gone = next((c.at for c in changes_of if c.op == "delete" and c.at >= when - 1), None)
        if gone is not None and any(c.op != "delete" and c.at > gone for c in changes_of):
            resurrected += 1
        lag = NEVER if gone is None or instance_id in listed else (gone - when) / 1000
        lags.append((lag, began, instance_id))
    return {
        **spread([lag for lag, _, _ in lags]),
        "slowest": _slowest(lags),
        "never_held": never_held,
        "resurrected": resurrected,
        "still_listed": len(deleted.keys() & listed),
    }


def end_state(
    truth: Snapshot, mirror: dict[str, MirrorRow], deleted: Iterable[str], poisoned: set[str]
) -> dict[str, int]:
    """The mirror against ELSA after the settle, system workflows left out of both sides
    (`system_listed` counts those the mirror holds)."""
    system = {d.definition_id for d in truth.definitions.values() if d.is_system}
    want = {i.id: i for i in truth.instances.values() if not i.is_system}
    got = {key: row for key, row in mirror.items() if row.definition_id not in system}
    both = want.keys() & got.keys()
    older = wrong = stale = 0
    for key in both:
        have, should = got[key], want[key]
        updated = elsa_ms(should.updated_at)
        if (have.updated_at, have.sub_status) != (updated, should.sub_status):
            wrong += 1
            older += have.updated_at < updated
        elif should.status == "Running" and key not in poisoned:
            stale += not same_details(have, (should.current_activity, should.variables))
    extra = got.keys() - want.keys()
    return {
        "elsa": len(want),
        "mirrored": len(got),
        "missing": len(want.keys() - got.keys()),
        "wrong": wrong,
        "older": older,
        "extra": len(extra),
        "deleted_listed": len(extra & set(deleted)),
        "stale_details": stale,
        "system_listed": len(mirror) - len(got),
    }
