"""The simulated ELSA server's state and its mutations (reads are in reads.py).

All state lives here, not in the ASGI app, so tests can stop a server and serve the same
simulator again (a "connection refused" window), and every public method takes one lock,
so a test thread can mutate while uvicorn serves from another thread.

With realism (`SimulatorConfig.realism`) a mutation is a commit that may become visible
later (commits.py); the store always holds what ELSA's API shows, and every public call
first makes the commits that are due visible.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from functools import cached_property
from typing import Final

from starlette.applications import Starlette

from tamma_sync.simulator.app import create_app
from tamma_sync.simulator.auth import Authenticator
from tamma_sync.simulator.catalog import NAMED_TEMPLATES
from tamma_sync.simulator.clock import Clock, duration_ticks, round_down, to_ticks, wall_ticks
from tamma_sync.simulator.commits import CommitKind, PendingCommits
from tamma_sync.simulator.config import ADMIN_API_KEY, SimulatorConfig
from tamma_sync.simulator.definitions import DefinitionRegistry, DefinitionVersion
from tamma_sync.simulator.derive import Deriver
from tamma_sync.simulator.faults import Faults
from tamma_sync.simulator.ids import IdCodec
from tamma_sync.simulator.instances import SubStatus
from tamma_sync.simulator.lifecycle import forced_next, natural_next, silent_next
from tamma_sync.simulator.reads import ApiReads
from tamma_sync.simulator.realism import TIE_REPEAT_SHARE
from tamma_sync.simulator.seeding import (
    SYSTEM_SHARE,
    pick_poisoned,
    seed_definitions,
    seed_instances,
)
from tamma_sync.simulator.snapshot import DraftSaved, StepReport
from tamma_sync.simulator.wire import InternalError

__all__ = ["ADMIN_API_KEY", "ElsaSimulator", "SimulatorConfig"]

_STEPS_RANDOM: Final = 0x57
_FAULTS_RANDOM: Final = 0xFA
_REALISM_RANDOM: Final = 0x4EA1
_COMMITS_RANDOM: Final = 0xC0C0
_TIES_RANDOM: Final = 0x71E5
_CREATE_SHARE: Final = 0.2
_PICK_ATTEMPTS: Final = 16
#: Share of realism's deletions that follow the retention job (oldest ended first).
_RETENTION_SHARE: Final = 0.8
#: Chance that a random status-free commit of a suspended instance moves its bookmark.
_BOOKMARK_MOVE_SHARE: Final = 0.5

#: An instance's newest state, pending commits included: sub-status, stage, retries, edits.
_Working = tuple[SubStatus, int, int, int]
_PENDING: Final = int(SubStatus.Pending)
_EXECUTING: Final = int(SubStatus.Executing)
_FINISHED: Final = int(SubStatus.Finished)


class ElsaSimulator(ApiReads):
    """A seeded, mutable, thread-safe ELSA 3 server state with an ASGI app over it."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config = config or SimulatorConfig()
        self._realism = realism = config.realism
        self._release = release = config.release
        self._lock = threading.RLock()
        self._codec = codec = IdCodec(config.seed)
        start = round_down(wall_ticks(), 15) if config.wall_clock else to_ticks(config.start)
        self._start = start
        self._clock = Clock(
            start=start,
            quantum=duration_ticks(config.quantum),
            wall=config.wall_clock,
            codec=codec,
            repeat_share=TIE_REPEAT_SHARE if realism.ties else 0.0,
        )
        self._registry = DefinitionRegistry(codec, release)
        seed_definitions(self._registry, codec, config, start)
        self._store = seed_instances(self._registry, codec, config, start)
        self._derive = Deriver(codec, self._registry, self._store, release)
        self._random = random.Random(codec.hash(_STEPS_RANDOM))
        self._realism_random = random.Random(codec.hash(_REALISM_RANDOM))
        self._ties_random = random.Random(codec.hash(_TIES_RANDOM)) if realism.ties else None
        self._pending = (
            PendingCommits(
                lag_seconds=realism.commit_lag.total_seconds(),
                manual=realism.manual_commits,
                seed=codec.hash(_COMMITS_RANDOM),
            )
            if realism.delays_commits
            else None
        )
        self._poisoned = pick_poisoned(self._store, codec, realism.poisoned_details)
        self.faults = Faults(codec.hash(_FAULTS_RANDOM))
        self.auth = Authenticator(
            seed=config.seed,
            users=config.users,
            api_keys=config.api_keys,
            access_lifetime=config.access_token_lifetime,
            refresh_lifetime=config.refresh_token_lifetime,
        )

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app (ELSA routes under the prefix, control routes under /_simulator)."""
        return create_app(self)

    # -- commits -----------------------------------------------------------------------

    def _working(self, row: int) -> _Working | None:
        """The newest state of a row (its last pending commit, else the committed one)."""
        if self._pending is not None:
            commit = self._pending.latest(row)
            if commit is not None:
                return commit.sub_status, commit.stage, commit.retries, commit.edits
        store = self._store
        if not store.is_live(row):
            return None
        status = SubStatus(store.sub_status[row])
        return status, store.stage[row], store.retries[row], store.edits.get(row, 0)

    def _known_row(self, instance_id: str) -> int | None:
        """The row of an instance that exists, committed or with its creation pending."""
        row = self._derive.decode(instance_id)
        if row is None:
            return None
        if self._store.is_live(row) or (self._pending is not None and self._pending.has(row)):
            return row
        return None

    def _create(self, version_row: int, ticks: int) -> int:
        if self._pending is None:
            return self._store.add(version_row, ticks)
        row = self._store.reserve(version_row)
        self._pending.add(
            row,
            CommitKind.CREATE,
            sub_status=SubStatus.Pending,
            stage=0,
            retries=0,
            edits=0,
            ticks=ticks,
        )
        return row

    def _update(
        self, row: int, target: SubStatus, stage: int, retries: int, edits: int, ticks: int
    ) -> None:
        """Commit a status change stamped `ticks`."""
        if self._pending is None:
            self._store.update(row, target, stage, retries, ticks)
            return
        self._pending.add(
            row,
            CommitKind.UPDATE,
            sub_status=target,
            stage=stage,
            retries=retries,
            edits=edits,
            ticks=ticks,
        )

    def _silent(self, row: int, move: bool) -> bool:
        """A status-free commit: mid-run commits, `POST /workflow-instances/{id}/variables`
        (WorkflowInstanceVariableManager.SetVariablesAsync -> SaveAsync in src/modules/
        Elsa.Workflows.Management/Services/WorkflowInstanceVariableManager.cs) and
        alterations store the state without `TransitionTo`, so variables (and a
        bookmark) change while `updatedAt` and the sub-status stay."""
        working = self._working(row)
        if working is None or row in self._poisoned:
            return False
        current, stage_before, retries, edits = working
        version = self._registry.rows[self._store.version_row[row]]
        assert version is not None
        stage = silent_next(current, stage_before, len(version.template.waits), move)
        if stage is None:
            return False
        edits += 1
        if self._pending is None:
            self._store.touch(row, stage, edits)
        else:
            self._pending.add(
                row,
                CommitKind.SILENT,
                sub_status=current,
                stage=stage,
                retries=retries,
                edits=edits,
                ticks=0,
            )
        return True

    def _delete_row(self, row: int) -> None:
        """Deletes are immediate and drop the instance's pending commits."""
        if self._pending is not None:
            self._pending.drop(row)
        self._store.delete(row)

    def flush_commits(self, ids: Iterable[str] | None = None) -> int:
        """Make pending commits visible now: all, or those of the given instances (in
        commit order). Returns how many became visible."""
        with self._locked():
            if self._pending is None:
                return 0
            rows = None
            if ids is not None:
                rows = [r for r in map(self._derive.decode, ids) if r is not None]
            commits = self._pending.take(rows)
            self._reveal(commits, time.monotonic())
            return len(commits)

    # -- mutations ---------------------------------------------------------------------

    def step(self, count: int = 1) -> StepReport:
        """Apply `count` random steps, each with its own timestamp.

        A step creates an instance (a fifth of the time, or when no running instance is
        found) or moves a running one on: Pending -> Executing -> Suspended <-> Executing
        -> Finished | Faulted | Cancelled, with retries bumping `retryCount`. With realism,
        `delete_share` of the steps delete an instance and `silent_share` are status-free
        commits of a running one.
        """
        created: list[str] = []
        updated: dict[str, None] = {}
        deleted: list[str] = []
        silent: dict[str, None] = {}
        realism = self._realism
        churn = realism.delete_share + realism.silent_share
        derive = self._derive
        with self._locked():
            for _ in range(count):
                ticks = self._clock.tick()
                if churn:
                    roll = self._realism_random.random()
                    if roll < realism.delete_share:
                        row = self._pick_doomed()
                        if row is not None:
                            deleted.append(derive.instance_id(row))
                            self._delete_row(row)
                            continue
                    elif roll < churn:
                        row = self._pick_running(self._realism_random, started=True)
                        move = self._realism_random.random() < _BOOKMARK_MOVE_SHARE
                        if row is not None and self._silent(row, move):
                            silent[derive.instance_id(row)] = None
                            continue
                row = self._pick_running(self._random)
                if row is None or self._random.random() < _CREATE_SHARE:
                    version = self._pick_version()
                    if version is None:
                        continue
                    created.append(derive.instance_id(self._create(version.row, ticks)))
                else:
                    self._advance(row, None, ticks)
                    updated[derive.instance_id(row)] = None
        return StepReport(
            created=created, updated=list(updated), deleted=deleted, silent=list(silent)
        )

    def _pick_running(self, rng: random.Random, *, started: bool = False) -> int | None:
        """A random running instance, favouring recent ones (they are the busy ones); not
        one with a pending commit (ELSA's runner holds it), nor a poisoned one."""
        store, pending, poisoned = self._store, self._pending, self._poisoned
        status = store.sub_status
        rows = store.row_count
        lowest = _EXECUTING if started else _PENDING
        for _ in range(_PICK_ATTEMPTS if rows else 0):
            row = rows - 1 - int(rows * rng.random() ** 3)
            if lowest <= status[row] < _FINISHED and (
                (pending is None or not pending.has(row)) and row not in poisoned
            ):
                return row
        return None

    def _pick_doomed(self) -> int | None:
        """An instance to delete: mostly the oldest ended one, as the retention cleanup
        job deletes ended instances page by page (src/modules/Elsa.Retention/Jobs/
        CleanupJob.cs, 3.3-3.5); sometimes a random one (an operator's delete)."""
        store, pending, poisoned = self._store, self._pending, self._poisoned
        if self._realism_random.random() < _RETENTION_SHARE:
            for row in store.created.live_rows_from_start():
                if (
                    store.sub_status[row] >= SubStatus.Finished
                    and (pending is None or not pending.has(row))
                    and row not in poisoned
                ):
                    return row
        rows = store.row_count
        for _ in range(_PICK_ATTEMPTS if rows else 0):
            row = self._realism_random.randrange(rows)
            if store.is_live(row) and row not in poisoned:
                return row
        return None

    def _pick_version(self, definition_id: str | None = None) -> DefinitionVersion | None:
        """The published version new instances run (ELSA dispatches Published)."""
        if definition_id is not None:
            return self._registry.published(definition_id)
        candidates = [
            v for v in (self._registry.published(d) for d in self._registry.definition_ids()) if v
        ]
        if not candidates:
            return None
        weights = [3.0 if v.template is NAMED_TEMPLATES[0] else 1.0 for v in candidates]
        system = (
            [i for i, v in enumerate(candidates) if v.is_system]
            if self._realism.system_workflows
            else []
        )
        if system and len(system) < len(candidates):
            share = sum(weights) * SYSTEM_SHARE / (1 - SYSTEM_SHARE) / len(system)
            for i in system:
                weights[i] = share
        return self._random.choices(candidates, weights)[0]

    def _advance(self, row: int, target: SubStatus | None, ticks: int) -> bool:
        """Move a running instance on (to `target`, or along its lifecycle at random)."""
        working = self._working(row)
        if working is None:
            return False
        current, stage, retries, edits = working
        if current.ended:
            return False
        version = self._registry.rows[self._store.version_row[row]]
        assert version is not None
        waits = len(version.template.waits)
        if target is None:
            roll = self._random.random()
            target, stage, retries = natural_next(current, stage, retries, waits, roll)
        else:
            stage = forced_next(current, target, stage, waits)
        self._update(row, target, stage, retries, edits, ticks)
        return True

    def create_instances(self, count: int = 1, *, definition_id: str | None = None) -> list[str]:
        """Start `count` Pending instances (of `definition_id`'s published version, else of
        random definitions); one call is one commit: they share one timestamp."""
        with self._locked():
            ticks = self._clock.tick()
            ids: list[str] = []
            for _ in range(count):
                version = self._pick_version(definition_id)
                if version is None:
                    raise ValueError(f"no published definition {definition_id or ''}".strip())
                ids.append(self._derive.instance_id(self._create(version.row, ticks)))
            return ids

    def progress_instances(
        self, ids: Iterable[str], *, to: SubStatus | str | None = None
    ) -> list[str]:
        """Move the given instances one step on (or to sub-status `to`); one shared
        timestamp. Returns the ids that changed (unknown and ended ones are skipped)."""
        target = SubStatus[to] if isinstance(to, str) else to
        with self._locked():
            ticks = self._clock.tick()
            changed: list[str] = []
            for instance_id in dict.fromkeys(ids):
                row = self._known_row(instance_id)
                if row is not None and self._advance(row, target, ticks):
                    changed.append(instance_id)
            return changed

    def cancel_instances(self, ids: Iterable[str]) -> list[str]:
        """Cancel running instances (-> Finished/Cancelled), one shared stamp; returns the
        ids that changed (unknown, ended and poisoned ones are skipped).

        `WorkflowCancellationService` (src/modules/Elsa.Workflows.Runtime/Services/
        WorkflowCancellationService.cs) dispatches a cancellation for each instance that
        is not Finished; it runs as a normal commit (stamped, visible after the lag).
        """
        with self._locked():
            ticks = self._clock.tick()
            changed: list[str] = []
            for instance_id in dict.fromkeys(ids):
                row = self._known_row(instance_id)
                working = None if row is None else self._working(row)
                if row is None or working is None or row in self._poisoned:
                    continue
                _, stage, retries, edits = working
                if not working[0].ended:
                    self._update(row, SubStatus.Cancelled, stage, retries, edits, ticks)
                    changed.append(instance_id)
            return changed

    def api_cancel_instance(self, instance_id: str) -> None:
        """`POST /cancel/workflow-instances/{id}` (3.1+): cancels a committed running
        instance; unknown and ended ones change nothing (the endpoint ignores the
        service's result and always answers 200). A poisoned one cannot be loaded (500)."""
        with self._locked():
            row = self._derive.row_of(instance_id)
            if row is None:
                return
            if row in self._poisoned:
                raise InternalError(f"workflow instance {instance_id} cannot be loaded")
            self.cancel_instances([instance_id])

    def silent_commit(self, ids: Iterable[str]) -> list[str]:
        """A status-free commit of each running (Executing or Suspended) instance given:
        its variables change, a suspended one's bookmark moves to the next wait if there
        is one; `updatedAt`, sub-status and list row stay. Returns the ids changed."""
        with self._locked():
            changed: list[str] = []
            for instance_id in dict.fromkeys(ids):
                row = self._known_row(instance_id)
                if row is not None and self._silent(row, move=True):
                    changed.append(instance_id)
            return changed

    def delete_instances(self, ids: Iterable[str]) -> int:
        """Hard-delete instances (committed or with their creation pending) and their
        pending commits; returns how many existed."""
        with self._locked():
            deleted = 0
            for instance_id in dict.fromkeys(ids):
                row = self._known_row(instance_id)
                if row is not None:
                    self._delete_row(row)
                    deleted += 1
            return deleted

    def api_delete_instance(self, instance_id: str) -> bool:
        """`DELETE /workflow-instances/{id}`: only a committed instance is found."""
        with self._locked():
            row = self._derive.row_of(instance_id)
            if row is None:
                return False
            self._delete_row(row)
            return True

    def save_draft(self, definition_id: str) -> DraftSaved:
        """ELSA's draft save: edits the unpublished latest version in place (same id,
        version and createdAt; new tree and variables), else adds version+1 as a draft.

        Raises KeyError for an unknown definition, ValueError for a code-first one.
        """
        with self._locked():
            version, in_place = self._registry.save_draft(definition_id, self._clock.tick())
            return DraftSaved(version_id=version.id, version=version.version, in_place=in_place)

    def publish(self, definition_id: str) -> str:
        """Publish the latest version (the previously published one is retracted)."""
        with self._locked():
            self._clock.tick()
            return self._registry.publish(definition_id).id

    def delete_definition(self, definition_id: str) -> int | None:
        """Delete every version and, in cascade, their instances; returns how many
        instances went (None if the definition does not exist)."""
        with self._locked():
            removed = self._registry.remove_definition(definition_id)
            if not removed:
                return None
            return self._delete_instances_of({v.row for v in removed})

    def delete_definition_version(self, version_id: str) -> int | None:
        """Delete one version and its instances (None if unknown)."""
        with self._locked():
            removed = self._registry.remove_version(version_id)
            if removed is None:
                return None
            return self._delete_instances_of({removed.row})

    def _delete_instances_of(self, version_rows: set[int]) -> int:
        """Delete the instances of these versions; returns how many were committed (those
        whose creation is pending go too, uncounted)."""
        store = self._store
        doomed = [row for row in store.live_rows() if store.version_row[row] in version_rows]
        for row in doomed:
            self._delete_row(row)
        if self._pending is not None:
            for row in self._pending.rows():
                if store.version_row[row] in version_rows:
                    self._delete_row(row)
        return len(doomed)

    def bulk_delete_instances(
        self, ids: list[str] | None, definition_id: str | None, definition_ids: list[str] | None
    ) -> int:
        """`POST /bulk-actions/delete/workflow-instances`; like ELSA, an empty filter
        matches (and deletes) every committed instance."""
        with self._locked():
            versions = {
                v.row
                for v in self._registry.all_versions()
                if (not (definition_id or "").strip() or v.definition_id == definition_id)
                and (definition_ids is None or v.definition_id in definition_ids)
            }
            candidates = (
                self._store.live_rows()
                if ids is None
                else (
                    row for row in map(self._derive.row_of, dict.fromkeys(ids)) if row is not None
                )
            )
            doomed = [row for row in candidates if self._store.version_row[row] in versions]
            for row in doomed:
                self._delete_row(row)
            return len(doomed)
