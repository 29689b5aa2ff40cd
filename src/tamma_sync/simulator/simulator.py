"""The simulated ELSA server's state: seeding, queries, mutations, snapshot.

All state lives here, not in the ASGI app, so tests can stop a server and serve the same
simulator again (a "connection refused" window), and every public method takes one lock,
so a test thread can mutate while uvicorn serves from another thread.
"""

from __future__ import annotations

import bisect
import random
import threading
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Final

import orjson
from starlette.applications import Starlette

from tamma_sync.simulator.app import create_app
from tamma_sync.simulator.auth import Authenticator
from tamma_sync.simulator.catalog import JSON, NAMED_TEMPLATES, template_for
from tamma_sync.simulator.clock import (
    PRECISION_UNITS,
    TICKS_PER_SECOND,
    Clock,
    duration_ticks,
    format_ticks,
    round_down,
    to_ticks,
    wall_ticks,
)
from tamma_sync.simulator.definitions import (
    CLR_MATERIALIZER,
    JSON_MATERIALIZER,
    LIST_LINKS,
    DefinitionQuery,
    DefinitionRegistry,
    DefinitionVersion,
    VersionFilter,
)
from tamma_sync.simulator.derive import MAX_RETRIES, Deriver, InstanceState
from tamma_sync.simulator.faults import Faults
from tamma_sync.simulator.ids import DEFINITION_KIND, IdCodec
from tamma_sync.simulator.instances import (
    InstanceQuery,
    InstanceStore,
    Predicate,
    SubStatus,
    run_query,
)
from tamma_sync.simulator.snapshot import (
    DefinitionTruth,
    DraftSaved,
    InstanceTruth,
    Snapshot,
    StepReport,
)

#: The admin key ELSA up to 3.7.x accepts with `UseAdminApiKey()`.
ADMIN_API_KEY: Final = "00000000-0000-0000-0000-000000000000"

_DEFINITIONS_RANDOM: Final = 0xD0
_INSTANCES_RANDOM: Final = 0x1A
_STEPS_RANDOM: Final = 0x57
_FAULTS_RANDOM: Final = 0xFA
_CREATE_SHARE: Final = 0.2
_PICK_ATTEMPTS: Final = 16

# Seeded sub-status mix per random byte: 4% Pending, 4% Executing, 22% Suspended,
# 55% Finished, 5% Cancelled, 10% Faulted.
_STATUS_BYTES: Final = bytes(
    [SubStatus.Pending] * 10
    + [SubStatus.Executing] * 10
    + [SubStatus.Suspended] * 56
    + [SubStatus.Finished] * 141
    + [SubStatus.Cancelled] * 13
    + [SubStatus.Faulted] * 26
)
_RETRY_TABLE: Final = (0,) * 10 + (1,) * 3 + (2,) * 2 + (3,)
_SECOND: Final = TICKS_PER_SECOND
#: How long seeded instances of each sub-status ran: (minimum, spread), in ticks.
_DURATIONS: Final = (
    (0, 2 * _SECOND),
    (_SECOND, 300 * _SECOND),
    (60 * _SECOND, 3 * 86_400 * _SECOND),
    (5 * _SECOND, 6 * 3600 * _SECOND),
    (60 * _SECOND, 2 * 86_400 * _SECOND),
    (2 * _SECOND, 3600 * _SECOND),
)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything that shapes a simulator; the same config always builds the same state."""

    seed: int = 1
    #: Number of definitionIds (the first is `tamma-autonomous-mentorship`).
    definitions: int = 12
    #: Number of seeded instances, spread over `history` before `start`.
    instances: int = 200
    #: Route prefix of the ELSA API ("" for none).
    prefix: str = "/elsa/api"
    #: Virtual clock start; seeded data lies before it.
    start: datetime = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
    history: timedelta = timedelta(days=30)
    #: Virtual clock step per mutation.
    quantum: timedelta = timedelta(seconds=1)
    #: Use the real time instead (the demo); seeded data then ends now.
    wall_clock: bool = False
    package_version: str = "3.7.1"
    #: Require `ApiKey <key>` or `Bearer <access token>` on every ELSA route but login
    #: and package version.
    require_auth: bool = False
    api_keys: tuple[str, ...] = (ADMIN_API_KEY,)
    users: Mapping[str, str] = field(default_factory=lambda: {"admin": "password"})
    access_token_lifetime: float = 3600.0
    refresh_token_lifetime: float = 7200.0
    #: The server's local offset, which ELSA's midnight (whole-day) filter rule uses.
    server_utc_offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.definitions < 0 or self.instances < 0:
            raise ValueError("definitions and instances must not be negative")
        if self.instances and not self.definitions:
            raise ValueError("instances need at least one definition")
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError("prefix must start with '/' and not end with one, e.g. /elsa/api")


class ElsaSimulator:
    """A seeded, mutable, thread-safe ELSA 3 server state with an ASGI app over it."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config = config or SimulatorConfig()
        self._lock = threading.RLock()
        self._codec = codec = IdCodec(config.seed)
        start = round_down(wall_ticks(), 15) if config.wall_clock else to_ticks(config.start)
        self._start = start
        self._clock = Clock(
            start=start, quantum=duration_ticks(config.quantum), wall=config.wall_clock, codec=codec
        )
        self._registry = DefinitionRegistry(codec)
        self._seed_definitions()
        self._store = self._seed_instances()
        self._derive = Deriver(codec, self._registry, self._store)
        self._random = random.Random(codec.hash(_STEPS_RANDOM))
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

    # -- seeding -----------------------------------------------------------------------

    def _seed_definitions(self) -> None:
        rng = random.Random(self._codec.hash(_DEFINITIONS_RANDOM))
        window_start = self._start - duration_ticks(self.config.history)
        week = 7 * 86_400 * _SECOND
        for position in range(self.config.definitions):
            template = template_for(position)
            named = position < len(NAMED_TEMPLATES)
            definition_id = template.key if named else self._codec.encode(DEFINITION_KIND, position)
            code_first = position % 3 == 0 and position > 0
            if position == 0:
                count, published = 3, 3
            elif code_first:
                count, published = 1, 1
            else:
                count = rng.choice((1, 1, 2, 2, 3, 4))
                draft = rng.random() < (0.35 if count > 1 else 0.15)
                published = count - 1 if draft else count
            for version in range(1, count + 1):
                if version > published:
                    created = window_start + rng.randrange(duration_ticks(self.config.history))
                else:
                    created = window_start - (count - version + 1) * week - rng.randrange(week)
                self._registry.add(
                    definition_id,
                    template,
                    materializer=CLR_MATERIALIZER if code_first else JSON_MATERIALIZER,
                    version=version,
                    created_at=round_down(created, rng.getrandbits(4)),
                    is_latest=version == count,
                    is_published=version == published,
                    revision=rng.randrange(1, 3) if version > published else 0,
                )

    def _version_table(self) -> list[int]:
        """65,536 slots of version rows, weighted like real traffic, for seeding by bits.

        Each published version carries 80% of its definition's instances, older versions
        share the rest; Tamma's mentorship workflow is the busiest.
        """
        rng = random.Random(self._codec.hash(_INSTANCES_RANDOM, 1))
        rows: list[int] = []
        weights: list[float] = []
        for position, definition_id in enumerate(self._registry.definition_ids()):
            versions = self._registry.versions(definition_id)
            published = next((v for v in versions if v.is_published), None)
            if published is None:
                continue
            weight = 6.0 if position == 0 else float(rng.randint(1, 3))
            older = [v for v in versions if v.version < published.version]
            share = 0.8 if older else 1.0
            rows.append(published.row)
            weights.append(weight * share)
            for version in older:
                rows.append(version.row)
                weights.append(weight * (1 - share) / len(older))
        cumulative: list[float] = []
        total = 0.0
        for weight in weights:
            total += weight
            cumulative.append(total)
        return [
            rows[min(bisect.bisect_right(cumulative, (slot + 0.5) / 65_536 * total), len(rows) - 1)]
            for slot in range(65_536)
        ]

    def _seed_instances(self) -> InstanceStore:
        """Columns for `config.instances` instances, in one pass over seeded random bits.

        createdAt ascends with the row (jitter under half the spacing, precision rounding
        under a quarter), updatedAt is createdAt plus a duration typical of the sub-status,
        everything before the clock's start.
        """
        count = self.config.instances
        rng = random.Random(self._codec.hash(_INSTANCES_RANDOM))
        bits = array("Q")
        bits.frombytes(rng.randbytes(8 * count))
        statuses = rng.randbytes(count).translate(_STATUS_BYTES)
        stage_bytes = rng.randbytes(count)
        table = self._version_table() if count else []
        waits = [0 if v is None else len(v.template.waits) for v in self._registry.rows]
        end = self._start
        window = duration_ticks(self.config.history)
        begin = end - window
        spacing = max(window // max(count, 1), 4)
        units = [unit if unit <= spacing // 4 else 1 for unit in PRECISION_UNITS]
        update_units = list(PRECISION_UNITS)
        version_row = array("I")
        sub_status = bytearray(statuses)
        stage = bytearray(count)
        retries = bytearray(count)
        created_ticks = array("q")
        updated_ticks = array("q")
        for i, x in enumerate(bits):
            row = table[x & 0xFFFF]
            status = statuses[i]
            created = begin + i * spacing + (((x >> 16) & 0xFFFFF) * (spacing // 2) >> 20)
            created -= created % units[(x >> 36) & 15]
            lowest, spread = _DURATIONS[status]
            fraction = x >> 48
            duration = lowest + (spread * fraction * fraction * fraction >> 48)
            remaining = end - created
            if duration >= remaining:
                duration = remaining * ((x >> 24) & 0xFF) >> 8
            updated = created + duration
            updated = max(created, updated - updated % update_units[(x >> 40) & 15])
            if status == SubStatus.Finished:
                stage[i] = waits[row]
            elif status != SubStatus.Pending:
                stage[i] = stage_bytes[i] % waits[row]
                retries[i] = _RETRY_TABLE[(x >> 44) & 15]
            version_row.append(row)
            created_ticks.append(created)
            updated_ticks.append(updated)
        return InstanceStore.seeded(
            version_row=version_row,
            sub_status=sub_status,
            stage=stage,
            retries=retries,
            created_ticks=created_ticks,
            updated_ticks=updated_ticks,
        )

    # -- reading -----------------------------------------------------------------------

    def now(self) -> str:
        """The latest timestamp the clock issued (the start before any mutation)."""
        with self._lock:
            return format_ticks(self._clock.last)

    def instance_ids(self) -> list[str]:
        """Ids of every live instance, oldest first."""
        with self._lock:
            return [self._derive.instance_id(row) for row in self._store.live_rows()]

    def counts(self) -> dict[str, int]:
        """Live instances per sub-status."""
        with self._lock:
            data = bytes(self._store.sub_status)
            return {status.name: data.count(status) for status in SubStatus}

    def snapshot(
        self, *, offset: int = 0, limit: int | None = None, details: bool = True
    ) -> Snapshot:
        """The ground truth: every definition's latest version, and instances oldest first.

        `offset`/`limit` window the instances (for big states); `details=False` skips the
        derived current activity and variables.
        """
        with self._lock:
            definitions: dict[str, DefinitionTruth] = {}
            for definition_id in self._registry.definition_ids():
                latest = self._registry.latest(definition_id)
                assert latest is not None
                activities = self._registry.root(latest)["activities"]
                assert isinstance(activities, list)
                definitions[definition_id] = DefinitionTruth(
                    definition_id=definition_id,
                    version_id=latest.id,
                    version=latest.version,
                    name=latest.template.name,
                    description=latest.template.description,
                    is_published=latest.is_published,
                    is_latest=latest.is_latest,
                    activities=_copy(activities),
                    variables=self._registry.variables(latest),
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
        waiting = self._derive.waiting_step(state) if details else None
        variables = (
            {name: value for _, name, value in self._derive.variables(state)} if details else None
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
        )

    # -- mutations ---------------------------------------------------------------------

    def step(self, count: int = 1) -> StepReport:
        """Apply `count` random steps, each with its own timestamp.

        A step creates an instance (a fifth of the time, or when no running instance is
        found) or moves a running one on: Pending -> Executing -> Suspended <-> Executing
        -> Finished | Faulted | Cancelled, with retries bumping `retryCount`.
        """
        created: list[str] = []
        updated: dict[str, None] = {}
        with self._lock:
            for _ in range(count):
                ticks = self._clock.tick()
                row = self._pick_running()
                if row is None or self._random.random() < _CREATE_SHARE:
                    version = self._pick_version()
                    if version is None:
                        continue
                    created.append(self._derive.instance_id(self._store.add(version.row, ticks)))
                else:
                    self._advance(row, None, ticks)
                    updated[self._derive.instance_id(row)] = None
        return StepReport(created=created, updated=list(updated))

    def _pick_running(self) -> int | None:
        """A random running instance, favouring recent ones (they are the busy ones)."""
        rows = self._store.row_count
        for _ in range(_PICK_ATTEMPTS if rows else 0):
            row = rows - 1 - int(rows * self._random.random() ** 3)
            if self._store.is_live(row) and self._store.sub_status[row] < SubStatus.Finished:
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
        return self._random.choices(candidates, weights)[0]

    def _advance(self, row: int, target: SubStatus | None, ticks: int) -> bool:
        """Move a running instance on (to `target`, or along its lifecycle at random)."""
        store = self._store
        current = SubStatus(store.sub_status[row])
        if current.ended:
            return False
        version = self._registry.rows[store.version_row[row]]
        assert version is not None
        waits = len(version.template.waits)
        stage, retries = store.stage[row], store.retries[row]
        if target is None:
            target, stage, retries = self._natural_next(current, stage, retries, waits)
        elif target is SubStatus.Pending:
            raise ValueError("an instance cannot go back to Pending")
        elif target is SubStatus.Executing and current is SubStatus.Suspended:
            stage = min(stage + 1, waits)
        elif target is SubStatus.Suspended:
            stage = min(stage, waits - 1)
        elif target is SubStatus.Finished:
            stage = waits
        store.update(row, target, stage, retries, ticks)
        return True

    def _natural_next(
        self, current: SubStatus, stage: int, retries: int, waits: int
    ) -> tuple[SubStatus, int, int]:
        roll = self._random.random()
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

    def create_instances(self, count: int = 1, *, definition_id: str | None = None) -> list[str]:
        """Start `count` Pending instances (of `definition_id`'s published version, else of
        random definitions); one call is one commit: they share one timestamp."""
        with self._lock:
            ticks = self._clock.tick()
            ids: list[str] = []
            for _ in range(count):
                version = self._pick_version(definition_id)
                if version is None:
                    raise ValueError(f"no published definition {definition_id or ''}".strip())
                ids.append(self._derive.instance_id(self._store.add(version.row, ticks)))
            return ids

    def progress_instances(
        self, ids: Iterable[str], *, to: SubStatus | str | None = None
    ) -> list[str]:
        """Move the given instances one step on (or to sub-status `to`); one shared
        timestamp. Returns the ids that changed (unknown and ended ones are skipped)."""
        target = SubStatus[to] if isinstance(to, str) else to
        with self._lock:
            ticks = self._clock.tick()
            changed: list[str] = []
            for instance_id in dict.fromkeys(ids):
                row = self._derive.row_of(instance_id)
                if row is not None and self._advance(row, target, ticks):
                    changed.append(instance_id)
            return changed

    def delete_instances(self, ids: Iterable[str]) -> int:
        """Hard-delete instances; returns how many existed."""
        with self._lock:
            deleted = 0
            for instance_id in dict.fromkeys(ids):
                row = self._derive.row_of(instance_id)
                if row is not None:
                    self._store.delete(row)
                    deleted += 1
            return deleted

    def save_draft(self, definition_id: str) -> DraftSaved:
        """ELSA's draft save: edits the unpublished latest version in place (same id,
        version and createdAt; new tree and variables), else adds version+1 as a draft.

        Raises KeyError for an unknown definition, ValueError for a code-first one.
        """
        with self._lock:
            version, in_place = self._registry.save_draft(definition_id, self._clock.tick())
            return DraftSaved(version_id=version.id, version=version.version, in_place=in_place)

    def publish(self, definition_id: str) -> str:
        """Publish the latest version (the previously published one is retracted)."""
        with self._lock:
            self._clock.tick()
            return self._registry.publish(definition_id).id

    def delete_definition(self, definition_id: str) -> int | None:
        """Delete every version and, in cascade, their instances; returns how many
        instances went (None if the definition does not exist)."""
        with self._lock:
            removed = self._registry.remove_definition(definition_id)
            if not removed:
                return None
            return self._delete_instances_of({v.row for v in removed})

    def delete_definition_version(self, version_id: str) -> int | None:
        """Delete one version and its instances (None if unknown)."""
        with self._lock:
            removed = self._registry.remove_version(version_id)
            if removed is None:
                return None
            return self._delete_instances_of({removed.row})

    def _delete_instances_of(self, version_rows: set[int]) -> int:
        store = self._store
        doomed = [row for row in store.live_rows() if store.version_row[row] in version_rows]
        for row in doomed:
            store.delete(row)
        return len(doomed)

    # -- the ELSA API, as wire JSON (used by the app) -------------------------------------

    def list_definitions(self, query: DefinitionQuery) -> dict[str, JSON]:
        """`GET /workflow-definitions`."""
        with self._lock:
            page, total = query.run(self._registry.all_versions())
            items: list[JSON] = [self._registry.summary(v) for v in page]
            return {"links": LIST_LINKS, "items": items, "totalCount": total}

    def definition(
        self, definition_id: str, version_filter: VersionFilter
    ) -> dict[str, JSON] | None:
        """`GET /workflow-definitions/by-definition-id/{id}`: the highest matching version."""
        with self._lock:
            matches = [v for v in self._registry.versions(definition_id) if version_filter(v)]
            return self._registry.model(matches[-1]) if matches else None

    def definition_version(self, version_id: str) -> dict[str, JSON] | None:
        """`GET /workflow-definitions/by-id/{id}`."""
        with self._lock:
            version = self._registry.by_id.get(version_id)
            return None if version is None else self._registry.model(version)

    def definition_versions(self, version_ids: Iterable[str]) -> dict[str, JSON]:
        """`GET /workflow-definitions/many-by-id`."""
        with self._lock:
            found = [self._registry.by_id.get(i) for i in dict.fromkeys(version_ids)]
            items: list[JSON] = [self._registry.model(v) for v in found if v is not None]
            return {"items": items, "count": len(items)}

    def definition_count(self) -> int:
        """`GET /workflow-definitions/query/count`: distinct definitionIds."""
        with self._lock:
            return len(self._registry.definition_ids())

    def list_instances(self, query: InstanceQuery) -> dict[str, JSON]:
        """`GET|POST /workflow-instances`."""
        with self._lock:
            if query.is_system:
                return {"items": [], "totalCount": 0}
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
        with self._lock:
            row = self._derive.row_of(instance_id)
            return None if row is None else self._derive.detail(self._derive.state(row))

    def instance_variables(self, instance_id: str) -> dict[str, JSON] | None:
        """`GET /workflow-instances/{id}/variables`."""
        with self._lock:
            row = self._derive.row_of(instance_id)
            if row is None:
                return None
            return self._derive.variables_response(self._derive.state(row))

    def instance_execution_state(self, instance_id: str) -> dict[str, JSON] | None:
        """`GET /workflow-instances/{id}/execution-state`."""
        with self._lock:
            row = self._derive.row_of(instance_id)
            return None if row is None else self._derive.execution_state(self._derive.state(row))

    def instance_journal(self, instance_id: str, skip: int, take: int) -> dict[str, JSON] | None:
        """`GET /workflow-instances/{id}/journal`: `take` records after `skip`."""
        with self._lock:
            row = self._derive.row_of(instance_id)
            if row is None:
                return None
            records = self._derive.journal(self._derive.state(row))
            window = records[max(skip, 0) : max(skip, 0) + max(take, 0)]
            return {"items": window, "totalCount": len(records)}

    def bulk_delete_instances(
        self, ids: list[str] | None, definition_id: str | None, definition_ids: list[str] | None
    ) -> int:
        """`POST /bulk-actions/delete/workflow-instances`; like ELSA, an empty filter
        matches (and deletes) every instance."""
        with self._lock:
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
                self._store.delete(row)
            return len(doomed)


def _copy(value: list[JSON]) -> list[JSON]:
    """A deep copy of JSON (snapshot values must not alias the simulator's cache)."""
    copied = orjson.loads(orjson.dumps(value))
    assert isinstance(copied, list)
    return copied
