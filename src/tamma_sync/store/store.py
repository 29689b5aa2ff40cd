"""The Store: the only code that speaks SQL, one implementation for SQLite and PostgreSQL.

A facade: each method is one operation, and one write transaction when it writes (see
`database`); the work is done by the module of its entity — `catalog`, `instances`,
`activities`, `trends`, `engines`, `api_keys`, `sync_state`, `change_log`, `retention`, and
`overview` for the dashboard summary's reads across them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tamma_sync.models import (
    ApiKey,
    Change,
    Definition,
    DefinitionWrite,
    Engine,
    EngineEvent,
    EngineEventWrite,
    EngineReport,
    EntityKind,
    Instance,
    InstancePatch,
    InstancePosition,
    InstanceWrite,
    Scope,
    SourceState,
    SyncBatch,
    now_ms,
)
from tamma_sync.store import (
    activities,
    api_keys,
    catalog,
    change_log,
    engines,
    instances,
    overview,
    retention,
    sync_state,
    trends,
)
from tamma_sync.store.activities import RunningByActivity
from tamma_sync.store.anchors import OffsetAnchors
from tamma_sync.store.change_log import ObservedChange
from tamma_sync.store.connect import PING_AFTER_IDLE_SECONDS, open_sql_engine
from tamma_sync.store.database import CommitListener, Database
from tamma_sync.store.instances import NewRows
from tamma_sync.store.last_statements import CHANGES_CHANNEL
from tamma_sync.store.leadership import Leadership
from tamma_sync.store.overview import CatalogTotals, Overview
from tamma_sync.store.pages import InstancePage, InstanceQuery
from tamma_sync.store.retention import PurgeCutoffs
from tamma_sync.store.rows import instance_of
from tamma_sync.store.transaction import Transaction, WriteResult
from tamma_sync.store.trends import TrendKind, TrendWindow

# Where the feed and the fault tests have always found them.
__all__ = ["CHANGES_CHANNEL", "PING_AFTER_IDLE_SECONDS", "Store"]


class Store:
    """Async access to definitions, instances, engines, API keys and the change log."""

    def __init__(self, sql_engine: AsyncEngine, *, clock: Callable[[], int] = now_ms) -> None:
        self._db = Database(sql_engine, clock)
        self._definition_listing = catalog.DefinitionListing()
        self._offset_anchors = OffsetAnchors()

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 20, clock: Callable[[], int] = now_ms) -> Store:
        """Open (lazily) the database at an async SQLAlchemy URL. `clock`: now in epoch ms,
        which writes are stamped with and engines' liveness is judged by."""
        return cls(open_sql_engine(url, pool_size=pool_size), clock=clock)

    # -- the database ----------------------------------------------------------------------

    @property
    def sql_engine(self) -> AsyncEngine:
        return self._db.sql_engine

    @property
    def is_sqlite(self) -> bool:
        return self._db.is_sqlite

    @property
    def disk_full(self) -> bool:
        """Whether a write failed for want of room (a full disk) and none committed since."""
        return self._db.disk_full

    def now(self) -> int:
        """The store's now (epoch ms): what writes are stamped with."""
        return self._db.clock()

    async def close(self) -> None:
        await self._db.close()

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener(last_seq)` after every commit that appended to the change log."""
        self._db.add_commit_listener(listener)

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent, safe across replicas)."""
        await self._db.migrate()

    async def schema_revision(self) -> str | None:
        """The migration the database is at (None before the first one)."""
        return await self._db.schema_revision()

    async def lead(self, name: str) -> Leadership | None:
        """Try to become the one process doing `name`; None when another process leads."""
        return await self._db.lead(name)

    @asynccontextmanager
    async def reading_together(self) -> AsyncIterator[None]:
        """Let the reads awaited inside share one connection (awaited one after another,
        not gathered)."""
        async with self._db.reading_together():
            yield

    # -- definitions -----------------------------------------------------------------------

    async def upsert_definitions(
        self,
        tenant_id: str,
        writes: Sequence[DefinitionWrite],
        *,
        refresh_synced_at: bool = False,
    ) -> list[tuple[Definition, bool]]:
        """Create or update definitions; returns each stored definition and whether it is new."""
        async with self._db.writing() as tx:
            stored, _ = await catalog.write_definitions(
                tx, tenant_id, writes, refresh_synced_at=refresh_synced_at
            )
        return stored

    async def get_definition(self, tenant_id: str, definition_id: str) -> Definition | None:
        return await catalog.get_definition(self._db, tenant_id, definition_id)

    async def list_definition_json(
        self, tenant_id: str, *, compact: bool = False
    ) -> list[tuple[str, bytes]]:
        """Every live definition of a tenant as (id, its wire JSON), ordered by id; without
        `connections` (only a definition's own read has them), compact also without
        `activities` and `variables`."""
        return await self._definition_listing.read(self._db, tenant_id, compact=compact)

    async def list_definitions(self, tenant_id: str) -> list[Definition]:
        """Every live definition of a tenant, ordered by id."""
        return await catalog.list_definitions(self._db, tenant_id)

    async def delete_definitions(
        self, tenant_id: str, definition_ids: Sequence[str]
    ) -> WriteResult:
        """Tombstone definitions and every live instance of theirs (counted in `deleted`)."""
        async with self._db.writing() as tx:
            return await catalog.delete_definitions(tx, tenant_id, definition_ids)

    async def catalog_revision(self) -> int:
        """Moves on with every write that changed a definition or moved an instance count."""
        return await catalog.read_catalog_revision(self._db)

    async def instance_counts(self, tenant_id: str) -> dict[str, dict[str | None, int]]:
        """Live instances per definition and sub-status (None: untyped)."""
        return await catalog.instance_counts_by_definition(self._db, tenant_id)

    async def catalog_totals(self, tenant_id: str) -> CatalogTotals:
        """How many live definitions a tenant has, and live instances per sub-status."""
        return (await self.overview(tenant_id, recent_events=0)).totals

    async def overview(self, tenant_id: str, *, recent_events: int) -> Overview:
        """The dashboard summary's reads, in one statement: engines online and offline,
        catalog totals, the `recent_events` newest engine events, each source's state."""
        return await overview.read_overview(self._db, tenant_id, recent_events=recent_events)

    async def tenant_has_data(self, tenant_id: str) -> bool:
        """Whether a tenant holds anything, deleted rows too."""
        return await catalog.tenant_has_data(self._db, tenant_id)

    # -- instances -------------------------------------------------------------------------

    async def put_instances(
        self, tenant_id: str, writes: Sequence[InstanceWrite]
    ) -> tuple[list[Instance], WriteResult]:
        """Create or replace whole instances; unchanged ones are left exactly as they were."""
        async with self._db.writing(single_row=len(writes) == 1) as tx:
            rows, result = await instances.put_instances(tx, tenant_id, writes, last=True)
        return [instance_of(row) for row in rows], result

    async def create_instance(self, tenant_id: str, write: InstanceWrite) -> Instance:
        """Create an instance, or replace the one stored under the same id (compatible POST)."""
        return instance_of(await instances.put_instance(self._db, tenant_id, write))

    async def update_instance(
        self, tenant_id: str, instance_id: str, patch: InstancePatch
    ) -> Instance | None:
        """Apply a partial update to a live instance; None when there is no such instance.
        One that changes nothing writes nothing (see `instances.update_instance`)."""
        return await instances.update_instance(self._db, tenant_id, instance_id, patch)

    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance | None:
        return await instances.get_instance(self._db, tenant_id, instance_id)

    async def delete_instance(self, tenant_id: str, instance_id: str) -> bool:
        """Tombstone one instance; False when there is no live instance with that id."""
        return await self.delete_instances(tenant_id, [instance_id]) == 1

    async def delete_instances(self, tenant_id: str, instance_ids: Sequence[str]) -> int:
        async with self._db.writing() as tx:
            result = await instances.delete_instances(tx, tenant_id, instance_ids)
        return result.deleted

    async def list_instances(self, tenant_id: str, query: InstanceQuery) -> InstancePage:
        """One page of instances in a total order on (order column, id)."""
        return await instances.list_instances(self._db, tenant_id, query, self._offset_anchors)

    async def running_by_activity(
        self, tenant_id: str, definition_id: str
    ) -> RunningByActivity | None:
        """Where a definition's running instances are: how many at each activity (None:
        none), per sub-status; None when neither the definition nor an instance of it
        exists."""
        return await activities.running_by_activity(self._db, tenant_id, definition_id)

    async def trend(
        self, tenant_id: str, definition_id: str | None, window: TrendWindow
    ) -> list[dict[TrendKind, int]]:
        """Instances started, finished and faulted in each interval of `window`, oldest
        first: of one definition, or of all (None)."""
        return await trends.trend(self._db, tenant_id, definition_id, window)

    # -- sync ------------------------------------------------------------------------------

    def new_rows(self, tenant_id: str, source_id: str, writes: Sequence[InstanceWrite]) -> NewRows:
        """A sync batch's instance writes made into the rows they lead to where the mirror
        holds none of their ids, as a sync's initial walk writes them: the batch's work in
        Python, done ahead of `apply_sync_batch` while an earlier batch's transaction
        waits on the database, instead of in its own."""
        gathering = Transaction(None, self._db.dialect, self._db.clock())
        return instances.new_rows(gathering, tenant_id, writes, source_id)

    async def apply_sync_batch(
        self,
        tenant_id: str,
        batch: SyncBatch,
        made: NewRows | None = None,
        sent: asyncio.Event | None = None,
    ) -> WriteResult:
        """Apply one sync step atomically: rows, deletions, and the source's new state.
        `made`: what `new_rows` made of the batch, if it was asked. `sent`: set as the
        batch's rows go to the database (`Transaction.sent`). Such a batch (a sync's
        initial walk) is first written as if the mirror held none of its instances: their
        ids are not looked up (an eighth of the write's time on PostgreSQL). If one is
        there after all, that write fails whole and the batch is written again the usual
        way."""
        if made is not None and batch.instances and not batch.deleted_instance_ids:
            try:
                async with self._db.writing() as tx:
                    tx.sent = sent
                    return await sync_state.apply_sync_batch(
                        tx, tenant_id, batch, made, assume_new=True
                    )
            except IntegrityError:
                pass  # an instance of the batch is stored: looked up below
        async with self._db.writing() as tx:
            tx.sent = sent
            return await sync_state.apply_sync_batch(tx, tenant_id, batch, made)

    async def source_states(self, tenant_id: str) -> list[SourceState]:
        return await sync_state.source_states(self._db, tenant_id)

    async def source_state(self, tenant_id: str, source_id: str) -> SourceState | None:
        return await sync_state.source_state(self._db, tenant_id, source_id)

    async def source_counts(self, tenant_id: str) -> dict[str, dict[str, int]]:
        """Live definitions and instances per source: `{source: {"definitions": n, …}}`."""
        return await sync_state.source_counts(self._db, tenant_id)

    async def source_instance_positions(
        self,
        tenant_id: str,
        source_id: str,
        *,
        created_from: int | None = None,
        created_before: int | None = None,
        active: bool = False,
        after_id: str | None = None,
        limit: int,
    ) -> list[InstancePosition]:
        """A source's live instances in id order, what the sync compares with ELSA's."""
        return await instances.source_instance_positions(
            self._db,
            tenant_id,
            source_id,
            created_from=created_from,
            created_before=created_before,
            active=active,
            after_id=after_id,
            limit=limit,
        )

    # -- engines ---------------------------------------------------------------------------

    async def put_engine(
        self, tenant_id: str, engine_id: str, report: EngineReport
    ) -> tuple[Engine, bool]:
        """Register an engine or record its heartbeat; whether it is newly registered."""
        async with self._db.writing() as tx:
            return await engines.put_engine(tx, tenant_id, engine_id, report)

    async def get_engine(self, tenant_id: str, engine_id: str) -> Engine | None:
        return await engines.get_engine(self._db, tenant_id, engine_id)

    async def list_engines(self, tenant_id: str) -> list[Engine]:
        """Every engine of a tenant, by id, `online` derived from its last heartbeat."""
        return await engines.list_engines(self._db, tenant_id)

    async def delete_engine(self, tenant_id: str, engine_id: str) -> bool:
        """Forget an engine and its events; False when there is no such engine."""
        async with self._db.writing() as tx:
            return await engines.delete_engine(tx, tenant_id, engine_id)

    async def add_engine_events(
        self,
        tenant_id: str,
        engine_id: str,
        events: Sequence[EngineEventWrite],
        *,
        keep: int,
        max_age_ms: int,
    ) -> int | None:
        """Store events of a registered engine (None if not registered); how many it keeps."""
        async with self._db.writing() as tx:
            return await engines.add_engine_events(
                tx, tenant_id, engine_id, events, keep=keep, max_age_ms=max_age_ms
            )

    async def engine_events_page(
        self, tenant_id: str, engine_id: str | None, *, limit: int, offset: int = 0
    ) -> tuple[list[EngineEvent], int]:
        """Events newest first (of one engine, or of all), and how many there are."""
        return await engines.engine_events_page(
            self._db, tenant_id, engine_id, limit=limit, offset=offset
        )

    # -- API keys --------------------------------------------------------------------------

    async def create_api_key(
        self, tenant_id: str, scopes: Sequence[Scope], name: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new key and its secret token — shown once, stored only as a hash."""
        async with self._db.writing() as tx:
            return await api_keys.create_api_key(tx, tenant_id, scopes, name)

    async def list_api_keys(self) -> list[ApiKey]:
        return await api_keys.list_api_keys(self._db)

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke a key; False if there is no such key or it was already revoked."""
        async with self._db.writing() as tx:
            return await api_keys.revoke_api_key(tx, key_id)

    async def has_active_api_keys(self) -> bool:
        return await api_keys.has_active_api_keys(self._db)

    async def verify_api_key(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None (unknown, malformed or revoked)."""
        return await api_keys.verify_api_key(self._db, token)

    # -- retention and the change log ------------------------------------------------------

    async def purge(self, cutoffs: PurgeCutoffs, *, batch: int = 5_000) -> dict[str, int]:
        """Delete, in bounded batches, what retention says is old enough; counts per kind."""
        return await retention.purge(self._db, cutoffs, batch=batch)

    async def changes_after(
        self,
        seq: int,
        *,
        tenant_id: str | None = None,
        entity: EntityKind | None = None,
        entity_id: str | None = None,
        limit: int = 500,
    ) -> list[Change]:
        """Change-log rows with a seq greater than `seq`, oldest first."""
        return await change_log.changes_after(
            self._db, seq, tenant_id=tenant_id, entity=entity, entity_id=entity_id, limit=limit
        )

    async def entity_history(
        self, tenant_id: str, entity: EntityKind, entity_id: str, *, limit: int = 500
    ) -> tuple[list[ObservedChange], bool]:
        """The newest `limit` changes of one entity, oldest first, and whether older ones
        are still in the log."""
        return await change_log.entity_history(self._db, tenant_id, entity, entity_id, limit=limit)

    async def oldest_change_at(self) -> int | None:
        """When the oldest change still in the log was written."""
        return await change_log.oldest_change_at(self._db)

    async def last_seq(self) -> int:
        """The newest change seq (0 for an empty log)."""
        return await change_log.last_seq(self._db)

    async def first_seq(self) -> int | None:
        """The oldest change seq still in the log (retention purges older ones)."""
        return await change_log.first_seq(self._db)
