"""Reads of the simulator's state: its own readers (snapshot, counts) and the ELSA API's
reads as wire JSON (used by the app).

`ApiReads` is a base of `ElsaSimulator`: it holds the lock discipline (every public call
first makes due commits visible) and the read routes, which answer as the configured ELSA
release does.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import orjson

from tamma_sync.simulator.catalog import JSON
from tamma_sync.simulator.clock import Clock, format_ticks
from tamma_sync.simulator.commits import Commit, CommitKind, PendingCommits, apply_all
from tamma_sync.simulator.definitions import (
    LIST_LINKS,
    DefinitionQuery,
    DefinitionRegistry,
    VersionFilter,
)
from tamma_sync.simulator.derive import Deriver, InstanceState
from tamma_sync.simulator.instances import (
    InstanceQuery,
    InstanceStore,
    Predicate,
    SubStatus,
    run_query,
)
from tamma_sync.simulator.snapshot import CommitEvent, DefinitionTruth, InstanceTruth, Snapshot
from tamma_sync.simulator.versions import ElsaVersion
from tamma_sync.simulator.wire import InternalError

_EMPTY_PAGE: dict[str, JSON] = {"items": [], "totalCount": 0}


class ApiReads:
    """The read side of the simulated ELSA API (mixed into `ElsaSimulator`)."""

    _lock: threading.RLock
    _pending: PendingCommits | None
    _store: InstanceStore
    _registry: DefinitionRegistry
    _derive: Deriver
    _release: ElsaVersion
    _poisoned: set[int]
    _ties_random: random.Random | None
    _clock: Clock
    #: Called (under the lock) for each commit as it becomes visible; None: nobody.
    commit_observer: Callable[[CommitEvent], None] | None = None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock, after making the commits that are due visible."""
        with self._lock:
            pending = self._pending
            if pending is not None and pending.count:
                now = time.monotonic()
                self._reveal(pending.due(now), now)
            yield

    def _reveal(self, commits: list[Commit], now: float) -> None:
        """Make commits visible in the order given, then tell `commit_observer`."""
        observer = self.commit_observer
        if observer is None:
            apply_all(self._store, commits)
            return
        stamps: dict[int, int] = {}
        events: list[CommitEvent] = []
        for commit in commits:
            row = commit.row
            if commit.kind is not CommitKind.SILENT:
                stamps[row] = commit.ticks
            ticks = stamps.get(row, 0) or self._store.updated_at(row)
            version = self._registry.rows[self._store.version_row[row]]
            events.append(
                CommitEvent(
                    instance_id=self._derive.instance_id(row),
                    kind=commit.kind.name.lower(),
                    sub_status=commit.sub_status.name,
                    updated_at=format_ticks(ticks),
                    is_system=version is not None and version.is_system,
                    visible_at=min(commit.due, now),
                )
            )
        apply_all(self._store, commits)
        for event in events:
            observer(event)

    def _readable(self, instance_id: str) -> InstanceState | None:
        """A committed instance whose state ELSA can load (None: 404).

        Poisoned (realism): its stored state fails to load, so ELSA answers 500 with an
        empty body. Before 3.6 the store deserialises the state blob without a guard
        (src/modules/Elsa.EntityFrameworkCore/Modules/Management/WorkflowInstanceStore.cs,
        `OnLoadAsync`), and an unhandled exception in an endpoint (src/modules/
        Elsa.Workflows.Api/Endpoints/WorkflowInstances/Get/Endpoint.cs) is a bare 500.
        """
        row = self._derive.row_of(instance_id)
        if row is None:
            return None
        if row in self._poisoned:
            raise InternalError(f"workflow instance {instance_id} cannot be loaded")
        return self._derive.state(row)

    def _tie_shuffle(self) -> random.Random | None:
        """A per-request generator for the order of tied rows (realism's ties).

        ELSA orders with one key and no tie-breaker (`Filter(...).OrderBy(order)
        .Paginate(pageArgs)` in src/modules/Elsa.EntityFrameworkCore/Modules/Management/
        WorkflowInstanceStore.cs, src/modules/Elsa.Persistence.EFCore/Modules/Management/
        WorkflowInstanceStore.cs from 3.6), so a database may return equal keys in any
        order, and a different one on each request; `totalCount` is a separate count.
        """
        if self._ties_random is None:
            return None
        return random.Random(self._ties_random.getrandbits(64))

    # -- the simulator's own readers ----------------------------------------------------

    def now(self) -> str:
        """The latest timestamp the clock issued (the start before any mutation)."""
        with self._locked():
            return format_ticks(self._clock.last)

    def instance_ids(self) -> list[str]:
        """Ids of every live (committed) instance, oldest first."""
        with self._locked():
            return [self._derive.instance_id(row) for row in self._store.live_rows()]

    def counts(self) -> dict[str, int]:
        """Live (committed) instances per sub-status."""
        with self._locked():
            data = bytes(self._store.sub_status)
            return {status.name: data.count(status) for status in SubStatus}

    def pending_commits(self) -> int:
        """Commits made but not visible yet (realism's commit lag)."""
        with self._locked():
            return 0 if self._pending is None else self._pending.count

    def poisoned_ids(self) -> list[str]:
        """Instances whose detail routes answer 500 for good (realism), oldest first."""
        with self._locked():
            rows = sorted(r for r in self._poisoned if self._store.is_live(r))
            return [self._derive.instance_id(row) for row in rows]

    def snapshot(
        self, *, offset: int = 0, limit: int | None = None, details: bool = True
    ) -> Snapshot:
        """The ground truth: what ELSA's API shows now (committed state only), every
        definition's latest version, and instances oldest first.

        `offset`/`limit` window the instances (for big states); `details=False` skips the
        derived current activity and variables.
        """
        with self._locked():
            definitions: dict[str, DefinitionTruth] = {}
            for definition_id in self._registry.definition_ids():
                latest = self._registry.latest(definition_id)
                assert latest is not None
                root = self._registry.root(latest)
                activities, connections = root["activities"], root.get("connections")
                assert isinstance(activities, list)
                assert connections is None or isinstance(connections, list)
                definitions[definition_id] = DefinitionTruth(
                    definition_id=definition_id,
                    version_id=latest.id,
                    version=latest.version,
                    name=latest.template.name,
                    description=latest.template.description,
                    is_published=latest.is_published,
                    is_latest=latest.is_latest,
                    activities=_copy(activities),
                    connections=None if connections is None else _copy(connections),
                    variables=self._registry.variables(latest),
                    is_system=latest.is_system,
                )
            rows = self._store.created.scan(
                0, len(self._store.created.rows), descending=False, skip=offset
            )
            instances: dict[str, InstanceTruth] = {}
            for row in rows:
                if limit is not None and len(instances) >= limit:
                    break
                state = self._derive.state(row)
                instances[state.id] = self._truth(state, details)
            return Snapshot(
                now=format_ticks(self._clock.last),
                definitions=definitions,
                instances=instances,
                instance_count=self._store.live_count,
            )

    def _truth(self, state: InstanceState, details: bool) -> InstanceTruth:
        """An instance as an observer can know it: a poisoned one's details cannot be
        read, and variables exist only where the workflow state holds them."""
        readable = details and state.row not in self._poisoned
        waiting = self._derive.waiting_step(state) if readable else None
        variables = (
            {name: value for _, name, value in self._derive.variables(state)}
            if readable and self._derive.has_state_variables(state)
            else None
        )
        return InstanceTruth(
            id=state.id,
            definition_id=state.version.definition_id,
            definition_version_id=state.version.id,
            version=state.version.version,
            status=state.sub_status.status,
            sub_status=state.sub_status.name,
            correlation_id=self._derive.correlation_id(state.row, state.version.template),
            name=self._derive.name(state.row, state.version.template),
            incident_count=self._derive.incident_count(state.sub_status, state.retries),
            created_at=format_ticks(state.created_at),
            updated_at=format_ticks(state.updated_at),
            finished_at=None if state.finished_at is None else format_ticks(state.finished_at),
            current_activity=None if waiting is None else waiting.activity_id,
            variables=variables,
            is_system=state.version.is_system,
        )

    # -- definitions -----------------------------------------------------------------------

    def list_definitions(self, query: DefinitionQuery) -> dict[str, JSON]:
        """`GET /workflow-definitions` (`isSystem` filters from 3.1.0)."""
        with self._locked():
            if not self._release.has_system_workflows:
                query = replace(query, is_system=None)
            page, total = query.run(self._registry.all_versions())
            items: list[JSON] = [self._registry.summary(v) for v in page]
            return {"links": LIST_LINKS, "items": items, "totalCount": total}

    def definition(
        self, definition_id: str, version_filter: VersionFilter
    ) -> dict[str, JSON] | None:
        """`GET /workflow-definitions/by-definition-id/{id}`: the highest matching version."""
        with self._locked():
            matches = [v for v in self._registry.versions(definition_id) if version_filter(v)]
            return self._registry.model(matches[-1]) if matches else None

    def definition_version(self, version_id: str) -> dict[str, JSON] | None:
        """`GET /workflow-definitions/by-id/{id}`."""
        with self._locked():
            version = self._registry.by_id.get(version_id)
            return None if version is None else self._registry.model(version)

    def definition_versions(self, version_ids: Iterable[str]) -> dict[str, JSON]:
        """`GET /workflow-definitions/many-by-id`."""
        with self._locked():
            found = [self._registry.by_id.get(i) for i in dict.fromkeys(version_ids)]
            items: list[JSON] = [self._registry.model(v) for v in found if v is not None]
            return {"items": items, "count": len(items)}

    def definition_count(self) -> int:
        """`GET /workflow-definitions/query/count`: distinct definitionIds."""
        with self._locked():
            return len(self._registry.definition_ids())

    # -- instances -------------------------------------------------------------------------

    def list_instances(self, query: InstanceQuery) -> dict[str, JSON]:
        """`GET|POST /workflow-instances`; request fields the release lacks are ignored
        (src/modules/Elsa.Workflows.Api/Endpoints/WorkflowInstances/List/Endpoint.cs)."""
        with self._locked():
            release = self._release
            if not release.has_system_workflows:
                query = replace(query, is_system=None, has_incidents=None)
            if not release.has_name_filter:
                query = replace(query, name=None)
            if query.is_system and not any(v.is_system for v in self._registry.all_versions()):
                return dict(_EMPTY_PAGE)
            if query.page_size is None:
                offset, limit = 0, None
            else:
                offset, limit = max((query.page or 0) * query.page_size, 0), query.page_size
            rows, total = run_query(
                self._store,
                order=query.order,
                descending=query.descending,
                filters=query.timestamp_filters,
                predicate=self._predicate(query),
                offset=offset,
                limit=limit,
                name_of=self._derive.name_of_row,
                shuffle=self._tie_shuffle(),
            )
            items: list[JSON] = [self._derive.summary(row) for row in rows]
            return {"items": items, "totalCount": total}

    def _predicate(self, query: InstanceQuery) -> Predicate | None:
        """The non-timestamp filters as one row test (None when there are none)."""
        store, derive = self._store, self._derive
        checks: list[Predicate] = []
        if query.sub_statuses is not None and len(query.sub_statuses) < len(SubStatus):
            allowed = frozenset(int(s) for s in query.sub_statuses)
            checks.append(lambda row: store.sub_status[row] in allowed)
        definition_id = query.definition_id if (query.definition_id or "").strip() else None
        if definition_id or query.definition_ids or query.version is not None:
            rows = frozenset(
                v.row
                for v in self._registry.all_versions()
                if (not definition_id or v.definition_id == definition_id)
                and (not query.definition_ids or v.definition_id in query.definition_ids)
                and (query.version is None or v.version == query.version)
            )
            checks.append(lambda row: store.version_row[row] in rows)
        if query.is_system is not None:
            system = frozenset(v.row for v in self._registry.all_versions() if v.is_system)
            if query.is_system:
                checks.append(lambda row: store.version_row[row] in system)
            elif system:
                checks.append(lambda row: store.version_row[row] not in system)
        if query.has_incidents is not None:
            faulted = SubStatus.Faulted
            wanted = query.has_incidents
            checks.append(lambda row: (store.sub_status[row] == faulted) == wanted)
        if (query.correlation_id or "").strip():
            correlation_id = query.correlation_id
            checks.append(lambda row: self._correlation_of(row) == correlation_id)
        if query.name is not None:
            needle = query.name.lower()

            def name_matches(row: int) -> bool:
                name = derive.name_of_row(row)
                return name is not None and needle in name.lower()

            checks.append(name_matches)
        if (query.search_term or "").strip():
            term = query.search_term or ""
            checks.append(lambda row: self._search_matches(row, term))
        if not checks:
            return None
        if len(checks) == 1:
            return checks[0]
        return lambda row: all(check(row) for check in checks)

    def _correlation_of(self, row: int) -> str | None:
        version = self._registry.rows[self._store.version_row[row]]
        return None if version is None else self._derive.correlation_id(row, version.template)

    def _search_matches(self, row: int, term: str) -> bool:
        """ELSA's searchTerm: name (case-insensitive) or id, definition (version) id,
        correlationId (case-sensitive) contain the term."""
        version = self._registry.rows[self._store.version_row[row]]
        assert version is not None
        name = self._derive.name(row, version.template)
        correlation_id = self._derive.correlation_id(row, version.template)
        return (
            (name is not None and term.lower() in name.lower())
            or term in version.id
            or term in version.definition_id
            or term in self._derive.instance_id(row)
            or (correlation_id is not None and term in correlation_id)
        )

    def instance(self, instance_id: str) -> dict[str, JSON] | None:
        """`GET /workflow-instances/{id}`."""
        with self._locked():
            state = self._readable(instance_id)
            return None if state is None else self._derive.detail(state)

    def instance_variables(self, instance_id: str) -> dict[str, JSON]:
        """`GET /workflow-instances/{id}/variables` (3.3+): what ELSA's reader returns.

        `WorkflowInstanceVariableManager.GetVariablesAsync` (src/modules/
        Elsa.Workflows.Management/Services/WorkflowInstanceVariableManager.cs) returns
        nothing for an unknown id, and `DefaultWorkflowInstanceVariableReader` (src/modules/
        Elsa.Workflows.Core/Services/DefaultWorkflowInstanceVariableReader.cs) nothing when
        the state has no root context (a Pending instance): both are 200 with no items.
        """
        with self._locked():
            state = self._readable(instance_id)
            if state is None or not self._derive.has_state_variables(state):
                return {"items": [], "count": 0}
            return self._derive.variables_response(state)

    def instance_execution_state(self, instance_id: str) -> dict[str, JSON] | None:
        """`GET /workflow-instances/{id}/execution-state` (3.2+)."""
        with self._locked():
            state = self._readable(instance_id)
            return None if state is None else self._derive.execution_state(state)

    def instance_journal(self, instance_id: str, skip: int, take: int) -> dict[str, JSON]:
        """`GET /workflow-instances/{id}/journal`: `take` records after `skip`. An unknown
        instance has none: ELSA filters its log records by instance id and answers 200
        (src/modules/Elsa.Workflows.Api/Endpoints/WorkflowInstances/Journal/List/Endpoint.cs)."""
        with self._locked():
            state = self._readable(instance_id)
            records = [] if state is None else self._derive.journal(state)
            window = records[max(skip, 0) : max(skip, 0) + max(take, 0)]
            return {"items": window, "totalCount": len(records)}


def _copy(value: list[JSON]) -> list[JSON]:
    """A deep copy of JSON (snapshot values must not alias the simulator's cache)."""
    copied = orjson.loads(orjson.dumps(value))
    assert isinstance(copied, list)
    return copied
