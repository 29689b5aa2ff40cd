"""The Store: the only code that speaks SQL, one implementation for SQLite and PostgreSQL.

Every write runs in one transaction that also appends to the change log, and only when the
content really changed (compared by content hash). Writes are serialized — an asyncio lock
in the process, `BEGIN IMMEDIATE` on SQLite, a transaction-scoped advisory lock on
PostgreSQL — so change sequence numbers are handed out in commit order and a reader that
follows the log by `seq` can never skip a change that commits late.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tamma_sync.models import (
    DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
    ENDED_SUB_STATUSES,
    ApiKey,
    Change,
    ChangeOp,
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
    SubStatus,
    SyncBatch,
    content_hash,
    dump_json,
    now_ms,
)
from tamma_sync.store import migrations
from tamma_sync.store.bulk import BulkStatement, DriverSql, TableStats
from tamma_sync.store.errors import is_disk_full
from tamma_sync.store.leadership import AdvisoryLeadership, FileLeadership, Leadership
from tamma_sync.store.pages import (
    InstancePage,
    InstanceQuery,
    PageShape,
    count_statement,
    page_of,
    page_parameters,
    page_statement,
)
from tamma_sync.store.rows import (
    DEFINITION_CONTENT,
    chunks,
    definition_of,
    instance_of,
    instance_wire,
    json_text,
    merge_definition,
    merge_instance,
)
from tamma_sync.store.tables import (
    api_keys,
    catalog_revision,
    changes,
    definitions,
    engine_events,
    engines,
    instance_counts,
    instance_totals,
    instances,
    sync_state,
)

log = logging.getLogger(__name__)

#: PostgreSQL NOTIFY channel; the payload is the newest change seq of the transaction.
CHANGES_CHANNEL = "tamma_sync_changes"
#: Key of the PostgreSQL advisory lock that serializes writers across processes.
WRITE_LOCK_KEY = 0x7A11A5C0
#: Key of the PostgreSQL advisory lock held while migrating, so replicas starting
#: together do not race.
MIGRATION_LOCK_KEY = 0x7A11A5C1
_ID_ARRAY = postgresql.ARRAY(sa.String())
#: API keys look like `tsk_<id>_<secret>`: the id finds the row, the secret is checked.
API_KEY_PREFIX = "tsk_"
#: Change-log columns a write supplies (`seq` is the database's).
_CHANGE_COLUMNS = [column.name for column in changes.columns if column.name != "seq"]
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Connections to an SQLite file per process. Each is an aiosqlite thread, and threads
#: beyond two fight the event loop for the GIL: at 1,000,000 instances and 16 concurrent
#: requests, 15 connections served 540 pages/s, 4 served 690/s, 2 served 950/s.
SQLITE_CONNECTIONS = 2
#: A PostgreSQL connection idle in the pool for longer than this is pinged before use.
PING_AFTER_IDLE_SECONDS = 1.0

CommitListener = Callable[[int], None]

#: What `instance_counts` reports per definition: each sub-status, then the untyped ones.
_COUNTED: tuple[str | None, ...] = (*(member.value for member in SubStatus), None)


def _count_of(sub_status: str | None) -> sa.ColumnElement[int]:
    """A definition's kept count for one sub-status (None: those that are none of them)."""
    typed = [member.value for member in SubStatus]
    matches = (
        instance_counts.c.sub_status == sub_status
        if sub_status is not None
        else sa.or_(
            instance_counts.c.sub_status.is_(None),
            # Literals, not a list: a list is bound "expanding", which only SQLAlchemy's
            # own execution renders (the statement runs through the driver).
            instance_counts.c.sub_status.not_in([sa.literal(value) for value in typed]),
        )
    )
    # PostgreSQL sums bigints into numeric, which arrives as Decimal.
    return sa.cast(sa.func.sum(sa.case((matches, instance_counts.c.count), else_=0)), sa.BigInteger)


# The dashboard's reads, built once: building a statement and deriving its cache key
# cost about as much as running one of these on SQLite.
_TENANT = sa.bindparam("tenant_id", type_=sa.String)
_catalog_revision = sa.select(catalog_revision.c.revision)
_live_instance = sa.select(instances).where(
    instances.c.tenant_id == _TENANT,
    instances.c.id == sa.bindparam("instance_id", type_=sa.String),
    instances.c.deleted_at.is_(None),
)
_counts_by_definition = (
    sa.select(instance_counts.c.definition_id, *(_count_of(key) for key in _COUNTED))
    .where(instance_counts.c.tenant_id == _TENANT)
    .group_by(instance_counts.c.definition_id)
)
_live_definitions = (
    sa.select(sa.func.count().label("count"))
    .where(definitions.c.tenant_id == _TENANT, definitions.c.deleted_at.is_(None))
    .subquery()
)
# One row per kept total, each with the count of live definitions; one row of that count
# alone while the tenant has no totals.
_catalog_totals = sa.select(
    _live_definitions.c.count, instance_totals.c.sub_status, instance_totals.c.count
).select_from(_live_definitions.outerjoin(instance_totals, instance_totals.c.tenant_id == _TENANT))
_source_states = (
    sa.select(sync_state.c.state)
    .where(sync_state.c.tenant_id == _TENANT)
    .order_by(sync_state.c.source_id)
)
_engines_of_tenant = sa.select(engines).where(engines.c.tenant_id == _TENANT).order_by(engines.c.id)
_recent_events = (
    sa.select(engine_events)
    .where(engine_events.c.tenant_id == _TENANT)
    .order_by(engine_events.c.timestamp.desc(), engine_events.c.seq.desc())
    .limit(sa.bindparam("limit", type_=sa.Integer))
    .offset(sa.bindparam("offset", type_=sa.BigInteger))
)
_ENGINE = sa.bindparam("engine_id", type_=sa.String)
_engine_of_tenant = _engines_of_tenant.where(engines.c.id == _ENGINE)
_recent_events_of_engine = _recent_events.where(engine_events.c.engine_id == _ENGINE)
_events_total = sa.select(sa.func.count()).where(engine_events.c.tenant_id == _TENANT)
_events_total_of_engine = _events_total.where(engine_events.c.engine_id == _ENGINE)


@dataclass(frozen=True)
class CatalogTotals:
    """Live definitions, and live instances per sub-status (None: untyped)."""

    definitions: int
    instances: dict[str | None, int]


@dataclass(frozen=True)
class _KeptDefinition:
    """A definition's wire JSON, whole and without its body, as of one version."""

    version: tuple[int, int]
    full: bytes
    compact: bytes


#: What a compact definition leaves out.
_DEFINITION_BODY = frozenset({"activities", "variables"})


def _stale_definitions(
    versions: Sequence[Sequence[Any]], kept: Mapping[str, _KeptDefinition]
) -> list[str]:
    """The ids whose (revision, syncedAt) differs from what is kept, or that are not kept."""
    return [
        definition_id
        for definition_id, *version in versions
        if definition_id not in kept or kept[definition_id].version != tuple(version)
    ]


@dataclass(frozen=True)
class PurgeCutoffs:
    """Epoch-ms cutoffs: rows older than these are purged (`ended_instances`: off if None)."""

    tombstones: int
    changes: int
    engine_events: int
    ended_instances: int | None = None


@dataclass
class WriteResult:
    """What a bulk write did, counted by outcome."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def add(self, other: WriteResult) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted


@dataclass
class _Tx:
    """One write transaction: its connection and the change rows it will append."""

    conn: AsyncConnection
    now: int
    pending_changes: list[dict[str, Any]] = field(default_factory=list)
    count_deltas: collections.Counter[tuple[str, str, str, str]] = field(
        default_factory=collections.Counter
    )
    inserted: collections.Counter[str] = field(default_factory=collections.Counter)
    """Rows added per table, for planner statistics."""
    refreshed_definitions: bool = False
    """A definition's `syncedAt` moved without a change record (a POST that changed
    nothing else)."""

    @property
    def changes_catalog(self) -> bool:
        """Whether this transaction changes a definition or moves an instance count
        (retention's purge of ended instances moves counts, and a refreshed `syncedAt`
        changes a definition, without recording a change)."""
        return (
            self.refreshed_definitions
            or any(self.count_deltas.values())
            or any(
                change["entity"] == EntityKind.DEFINITION.value for change in self.pending_changes
            )
        )

    def count(self, tenant_id: str, row: Mapping[str, Any], delta: int) -> None:
        """Move the live-instance count of `row`'s (source, definition, sub-status)."""
        key = (tenant_id, row["source_id"] or "", row["definition_id"], row["sub_status"] or "")
        self.count_deltas[key] += delta

    def record(
        self,
        tenant_id: str,
        entity: EntityKind,
        entity_id: str,
        op: ChangeOp,
        revision: int,
        data: dict[str, Any],
        definition_id: str | None = None,
        sub_status: str | None = None,
    ) -> None:
        self.pending_changes.append(
            {
                "tenant_id": tenant_id,
                "entity": entity.value,
                "entity_id": entity_id,
                "op": op.value,
                "revision": revision,
                "at": self.now,
                "definition_id": definition_id,
                "sub_status": sub_status,
                "data": data,
            }
        )


class Store:
    """Async access to definitions, instances and the change log."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()
        self._commit_listeners: list[CommitListener] = []
        self._insert = sqlite.insert if self.is_sqlite else postgresql.insert
        self._stats = TableStats()
        self._definition_json: dict[str, dict[str, _KeptDefinition]] = {}
        self._definition_refresh = asyncio.Lock()
        self._bulk_statements: dict[
            tuple[str, tuple[str, ...], tuple[str, ...]], BulkStatement
        ] = {}
        self._driver_sql: dict[sa.ClauseElement, DriverSql] = {}
        self._shared_read: ContextVar[AsyncConnection | None] = ContextVar(
            f"tamma_sync_shared_read_{id(self)}", default=None
        )
        self.disk_full = False
        """Whether a write failed for want of room (a full disk) and none committed since."""

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 20) -> Store:
        """Open (lazily) the database at an async SQLAlchemy URL."""
        parsed = make_url(url)
        options: dict[str, Any] = {
            "json_serializer": json_text,
            "json_deserializer": orjson.loads,
        }
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                options.update(pool_size=SQLITE_CONNECTIONS, max_overflow=0)
            engine = create_async_engine(url, **options)
            _tune_sqlite(engine)
        else:
            # Reads run in autocommit: one round trip per statement instead of BEGIN,
            # statement, ROLLBACK. Writes ask for a transaction.
            engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size // 2,
                isolation_level="AUTOCOMMIT",
                **options,
            )
            _ping_when_idle(engine)
        return cls(engine)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener(last_seq)` after every commit that appended to the change log."""
        self._commit_listeners.append(listener)

    # -- schema ----------------------------------------------------------------------------

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent, safe across replicas)."""
        async with self._engine.connect() as plain_conn:
            conn = await plain_conn.execution_options(**self._write_options)
            if not self.is_sqlite:
                await conn.execute(
                    sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            try:
                await conn.run_sync(migrations.upgrade_to_head)
                await conn.commit()
            finally:
                if not self.is_sqlite:
                    # A failed migration aborted the transaction: the unlock in it would
                    # fail too, and hide the migration's own error.
                    await conn.rollback()
                    await conn.execute(
                        sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                    await conn.commit()

    async def schema_revision(self) -> str | None:
        """The migration the database is at (None before the first one)."""
        async with self._engine.connect() as conn:
            return await conn.run_sync(migrations.current_revision)

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # -- transactions ----------------------------------------------------------------------

    @property
    def _write_options(self) -> dict[str, Any]:
        """Execution options of a write transaction: BEGIN IMMEDIATE on SQLite (see
        `_tune_sqlite`), a real transaction on PostgreSQL (whose reads autocommit)."""
        if self.is_sqlite:
            return {"tamma_write": True}
        return {"tamma_write": True, "isolation_level": "READ COMMITTED"}

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[_Tx]:
        """A write transaction (`_transaction`): one that fails for want of room marks the
        store `disk_full`, and the next that commits clears it."""
        try:
            async with self._transaction() as tx:
                yield tx
        except Exception as exc:
            if is_disk_full(exc):
                self.disk_full = True
            raise
        self.disk_full = False

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Tx]:
        """One serialized write transaction; change rows are appended just before commit."""
        async with self._write_lock, self._engine.connect() as conn:
            write_conn = await conn.execution_options(**self._write_options)
            last_seq: int | None = None
            async with write_conn.begin():
                if not self.is_sqlite:
                    await write_conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY}
                    )
                tx = _Tx(write_conn, now=now_ms())
                yield tx
                await self._apply_count_deltas(tx)
                if tx.changes_catalog:
                    await write_conn.execute(
                        catalog_revision.update().values(revision=catalog_revision.c.revision + 1)
                    )
                if tx.pending_changes:
                    await self._bulk_statement(changes, _CHANGE_COLUMNS).run(
                        write_conn, tx.pending_changes
                    )
                    # Writers are serialized: the newest seq is this transaction's.
                    last_seq = (
                        await write_conn.execute(sa.select(sa.func.max(changes.c.seq)))
                    ).scalar_one()
                    tx.inserted["changes"] += len(tx.pending_changes)
                    if not self.is_sqlite:  # delivered to every listener at commit
                        await write_conn.execute(
                            sa.select(sa.func.pg_notify(CHANGES_CHANNEL, str(last_seq)))
                        )
        if last_seq is not None:
            for listener in self._commit_listeners:
                listener(last_seq)
        if not self.is_sqlite:
            await self._refresh_stats(tx.inserted)

    async def _refresh_stats(self, inserted: collections.Counter[str]) -> None:
        """ANALYZE tables that grew a lot since this process last did: during an initial
        sync the planner's row estimates go stale fast (and autovacuum may be off or slow),
        and a stale estimate turns the key lookups of every batch into table scans."""
        for table in self._stats.grown_enough(inserted):
            async with self._engine.connect() as conn:
                await conn.execute(sa.text(f"ANALYZE {table}"))
                await conn.commit()

    async def catalog_revision(self) -> int:
        """Moves on with every committed write that changed a definition or moved an
        instance count: while it stays the same, so do the definitions and their counts."""
        async with self._reading() as conn:
            [(revision,)] = await self._driver_form(_catalog_revision).rows(conn, {})
        return int(revision)

    async def _apply_count_deltas(self, tx: _Tx) -> None:
        """Move the kept counts, and their per-sub-status totals, by this transaction's
        deltas."""
        totals: collections.Counter[tuple[str, str]] = collections.Counter()
        rows = []
        for (tenant_id, source_id, definition_id, sub_status), delta in tx.count_deltas.items():
            if delta:
                totals[tenant_id, sub_status] += delta
                rows.append(
                    {
                        "tenant_id": tenant_id,
                        "source_id": source_id,
                        "definition_id": definition_id,
                        "sub_status": sub_status,
                        "count": delta,
                    }
                )
        await self._add_counts(tx, instance_counts, rows)
        await self._add_counts(
            tx,
            instance_totals,
            [
                {"tenant_id": tenant_id, "sub_status": sub_status, "count": delta}
                for (tenant_id, sub_status), delta in totals.items()
                if delta
            ],
        )

    async def _add_counts(self, tx: _Tx, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Add each row's `count` to the row with its key (inserting it if new)."""
        for chunk in chunks(rows):
            statement = self._insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=[column.name for column in table.primary_key.columns],
                set_={"count": table.c.count + statement.excluded["count"]},
            )
            await tx.conn.execute(statement, chunk)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection. Each statement sees one consistent snapshot (READ
        COMMITTED on PostgreSQL, an autocommit read on SQLite), so what must agree — a page
        and its total — is read by one statement."""
        shared = self._shared_read.get()
        if shared is not None:
            yield shared
            return
        async with self._engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def reading_together(self) -> AsyncIterator[None]:
        """Let the reads awaited inside share one connection: one pool checkout for a
        response made of several small reads, instead of one each.
        The reads must be awaited one after another, not gathered."""
        if self._shared_read.get() is not None:
            yield
            return
        async with self._engine.connect() as conn:
            token = self._shared_read.set(conn)
            try:
                yield
            finally:
                self._shared_read.reset(token)

    # -- definitions -----------------------------------------------------------------------

    async def upsert_definitions(
        self,
        tenant_id: str,
        writes: Sequence[DefinitionWrite],
        *,
        refresh_synced_at: bool = False,
    ) -> list[tuple[Definition, bool]]:
        """Create or update definitions; returns each stored definition and whether it is new.

        Fields a write leaves as None keep their stored values (the original API's shallow
        merge). A write that changes nothing stores nothing, or with `refresh_synced_at`
        only moves its `syncedAt` to now: no change record, the same revision.
        """
        async with self._writing() as tx:
            stored, _ = await self._upsert_definitions(
                tx, tenant_id, writes, refresh_synced_at=refresh_synced_at
            )
        return stored

    async def _upsert_definitions(
        self,
        tx: _Tx,
        tenant_id: str,
        writes: Sequence[DefinitionWrite],
        *,
        refresh_synced_at: bool = False,
    ) -> tuple[list[tuple[Definition, bool]], WriteResult]:
        result = WriteResult()
        refreshed: set[str] = set()
        existing = await self._select_by_ids(
            tx.conn, definitions, definitions.c.definition_id, tenant_id, [w.id for w in writes]
        )
        stored: list[tuple[Definition, bool]] = []
        to_write: dict[str, dict[str, Any]] = {}
        for write in writes:
            old = existing.get(write.id)
            live = old is not None and old["deleted_at"] is None
            row = merge_definition(tenant_id, write, old if live else None)
            row["content_hash"] = content_hash({k: row[k] for k in DEFINITION_CONTENT})
            if live and old is not None and old["content_hash"] == row["content_hash"]:
                if refresh_synced_at:
                    old = existing[write.id] = {**old, "synced_at": tx.now}
                    refreshed.add(write.id)
                stored.append((definition_of(old), False))
                result.unchanged += 1
                continue
            row["revision"] = (old["revision"] + 1) if old is not None else 1
            row["synced_at"] = tx.now
            row["deleted_at"] = None
            existing[write.id] = to_write[write.id] = row
            definition = definition_of(row)
            tx.record(
                tenant_id,
                EntityKind.DEFINITION,
                write.id,
                ChangeOp.UPDATE if live else ChangeOp.CREATE,
                row["revision"],
                definition.to_wire(),
                definition_id=write.id,
            )
            stored.append((definition, not live))
            if live:
                result.updated += 1
            else:
                result.created += 1
        await self._upsert_rows(
            tx.conn, definitions, ["tenant_id", "definition_id"], list(to_write.values())
        )
        # Ids written whole later in the same batch have their new syncedAt already.
        for chunk in chunks(sorted(refreshed.difference(to_write))):
            await tx.conn.execute(
                definitions.update()
                .where(definitions.c.tenant_id == tenant_id, definitions.c.definition_id.in_(chunk))
                .values(synced_at=tx.now)
            )
            tx.refreshed_definitions = True
        return stored, result

    async def get_definition(self, tenant_id: str, definition_id: str) -> Definition | None:
        async with self._reading() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(definitions).where(
                            definitions.c.tenant_id == tenant_id,
                            definitions.c.definition_id == definition_id,
                            definitions.c.deleted_at.is_(None),
                        )
                    )
                )
                .mappings()
                .first()
            )
        return definition_of(row) if row is not None else None

    async def list_definition_json(
        self, tenant_id: str, *, compact: bool = False
    ) -> list[tuple[str, bytes]]:
        """Every live definition of a tenant as (id, its wire JSON), ordered by id;
        `compact` leaves out `activities` and `variables`.

        Definitions carry their activities (kilobytes each) and rarely change, so their
        JSON is kept per (revision, syncedAt) and only new or changed ones are read and
        encoded again. What is kept is what the last listing saw: no more than the live
        definitions of the tenants listed.
        """
        live = (definitions.c.tenant_id == tenant_id, definitions.c.deleted_at.is_(None))
        kept = self._definition_json.get(tenant_id, {})
        async with self._reading() as conn:
            versions = (
                await conn.execute(
                    sa.select(
                        definitions.c.definition_id,
                        definitions.c.revision,
                        definitions.c.synced_at,
                    )
                    .where(*live)
                    .order_by(definitions.c.definition_id)
                )
            ).all()
            stale = _stale_definitions(versions, kept)
            fresh: dict[str, _KeptDefinition] = {}
            if stale:
                # One refresh at a time: listings that arrive together after a change (or
                # at start-up) would otherwise each decode and encode every definition.
                async with self._definition_refresh:
                    kept = self._definition_json.get(tenant_id, {})
                    stale = _stale_definitions(versions, kept)
                    for chunk in chunks(stale):
                        rows = await conn.execute(
                            sa.select(definitions).where(
                                *live, definitions.c.definition_id.in_(chunk)
                            )
                        )
                        for row in rows.mappings():
                            wire = definition_of(row).to_wire()
                            summary = {k: v for k, v in wire.items() if k not in _DEFINITION_BODY}
                            fresh[row["definition_id"]] = _KeptDefinition(
                                (row["revision"], row["synced_at"]),
                                dump_json(wire),
                                dump_json(summary),
                            )
        refreshed = set(stale)
        listed: dict[str, _KeptDefinition] = {}
        for definition_id, *_ in versions:
            entry = fresh.get(definition_id) if definition_id in refreshed else kept[definition_id]
            if entry is not None:  # else deleted between the two reads
                listed[definition_id] = entry
        self._definition_json[tenant_id] = listed
        return [
            (definition_id, entry.compact if compact else entry.full)
            for definition_id, entry in listed.items()
        ]

    async def list_definitions(self, tenant_id: str) -> list[Definition]:
        """Every live definition of a tenant, ordered by id."""
        async with self._reading() as conn:
            rows = (
                await conn.execute(
                    sa.select(definitions)
                    .where(definitions.c.tenant_id == tenant_id, definitions.c.deleted_at.is_(None))
                    .order_by(definitions.c.definition_id)
                )
            ).mappings()
            return [definition_of(row) for row in rows]

    async def delete_definitions(
        self, tenant_id: str, definition_ids: Sequence[str]
    ) -> WriteResult:
        """Tombstone definitions and every live instance of theirs (counted in `deleted`)."""
        async with self._writing() as tx:
            return await self._delete_definitions(tx, tenant_id, definition_ids)

    async def _delete_definitions(
        self,
        tx: _Tx,
        tenant_id: str,
        definition_ids: Sequence[str],
        source_id: str | None = None,
    ) -> WriteResult:
        """Tombstone live definitions (only `source_id`'s, when given) and their instances."""
        result = WriteResult()
        live = {
            key: row
            for key, row in (
                await self._select_by_ids(
                    tx.conn, definitions, definitions.c.definition_id, tenant_id, definition_ids
                )
            ).items()
            if row["deleted_at"] is None and source_id in (None, row["source_id"])
        }
        if not live:
            return result
        for chunk in chunks(list(live)):
            orphan_ids = (
                (
                    await tx.conn.execute(
                        sa.select(instances.c.id).where(
                            instances.c.tenant_id == tenant_id,
                            instances.c.definition_id.in_(chunk),
                            instances.c.deleted_at.is_(None),
                        )
                    )
                )
                .scalars()
                .all()
            )
            result.add(await self._delete_instances(tx, tenant_id, orphan_ids, source_id))
        for definition_id, row in live.items():
            tx.record(
                tenant_id,
                EntityKind.DEFINITION,
                definition_id,
                ChangeOp.DELETE,
                row["revision"] + 1,
                definition_of(row).to_wire(),
                definition_id=definition_id,
            )
        for chunk in chunks(list(live)):
            await tx.conn.execute(
                definitions.update()
                .where(definitions.c.tenant_id == tenant_id, definitions.c.definition_id.in_(chunk))
                .values(deleted_at=tx.now, revision=definitions.c.revision + 1)
            )
        result.deleted += len(live)
        return result

    # -- instances -------------------------------------------------------------------------

    async def put_instances(
        self, tenant_id: str, writes: Sequence[InstanceWrite]
    ) -> tuple[list[Instance], WriteResult]:
        """Create or replace whole instances; unchanged ones are left exactly as they were."""
        async with self._writing() as tx:
            rows, result = await self._put_instances(tx, tenant_id, writes)
        return [instance_of(row) for row in rows], result

    async def create_instance(self, tenant_id: str, write: InstanceWrite) -> Instance:
        """Create an instance, or replace the one stored under the same id (compatible POST)."""
        stored, _ = await self.put_instances(tenant_id, [write])
        return stored[0]

    async def update_instance(
        self, tenant_id: str, instance_id: str, patch: InstancePatch
    ) -> Instance | None:
        """Apply a partial update to a live instance; None when there is no such instance."""
        async with self._writing() as tx:
            row = await self._live_instance_row(tx.conn, tenant_id, instance_id)
            if row is None:
                return None
            current = instance_of(row)
            write = patch.apply_to(current)
            # A PUT that only moves updatedAt (the .NET sync's every cycle) is no change.
            probe = write.model_copy(update={"updated_at": current.updated_at})
            if (
                merge_instance(tenant_id, probe, dict(row), tx.now)["content_hash"]
                == row["content_hash"]
            ):
                return current
            [stored], _ = await self._put_instances(tx, tenant_id, [write])
            return instance_of(stored)

    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance | None:
        async with self._reading() as conn:
            row = await self._live_instance_row(conn, tenant_id, instance_id)
        return instance_of(row) if row is not None else None

    async def delete_instance(self, tenant_id: str, instance_id: str) -> bool:
        """Tombstone one instance; False when there is no live instance with that id."""
        async with self._writing() as tx:
            result = await self._delete_instances(tx, tenant_id, [instance_id])
        return result.deleted == 1

    async def delete_instances(self, tenant_id: str, instance_ids: Sequence[str]) -> int:
        async with self._writing() as tx:
            result = await self._delete_instances(tx, tenant_id, instance_ids)
        return result.deleted

    async def list_instances(self, tenant_id: str, query: InstanceQuery) -> InstancePage:
        """One page of instances in a total order on (order column, id).

        Offset pages are stable under updates when ordered by `createdAt`, which never
        changes; keyset pages (`after`) cost the same at any depth.
        """
        shape = PageShape.of(query)
        parameters = page_parameters(tenant_id, query)
        page = self._driver_form(page_statement(shape))
        async with self._reading() as conn:
            rows = await page.rows(conn, parameters)
            total: int | None = None  # counted as bigint: an int from both drivers
            if query.with_total:
                # A page past the end has no row to carry the total.
                if rows:
                    total = rows[0][-1]
                else:
                    count = self._driver_form(count_statement(shape))
                    [(total,)] = await count.rows(conn, parameters)
        wire, next_after = page_of(rows, query)
        return InstancePage(wire=wire, total=total, next_after=next_after)

    async def _put_instances(
        self,
        tx: _Tx,
        tenant_id: str,
        writes: Sequence[InstanceWrite],
        source_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], WriteResult]:
        """Write what changed; returns every instance's stored row (changed or not).
        `source_id`, when given, tags every row with it (a sync batch's source)."""
        result = WriteResult()
        existing = await self._select_by_ids(
            tx.conn, instances, instances.c.id, tenant_id, [w.id for w in writes]
        )
        stored: list[dict[str, Any]] = []
        to_write: dict[str, dict[str, Any]] = {}
        for write in writes:
            old = existing.get(write.id)
            live = old if old is not None and old["deleted_at"] is None else None
            row = merge_instance(tenant_id, write, live, tx.now, source_id)
            if live is not None and live["content_hash"] == row["content_hash"]:
                stored.append(live)
                result.unchanged += 1
                continue
            row["revision"] = (old["revision"] + 1) if old is not None else 1
            if live is not None:
                tx.count(tenant_id, live, -1)
            elif old is None:
                tx.inserted["instances"] += 1
            tx.count(tenant_id, row, +1)
            existing[write.id] = to_write[write.id] = row
            stored.append(row)
            op = ChangeOp.UPDATE if live is not None else ChangeOp.CREATE
            if live is not None:
                result.updated += 1
            else:
                result.created += 1
            tx.record(
                tenant_id,
                EntityKind.INSTANCE,
                write.id,
                op,
                row["revision"],
                instance_wire(row),
                definition_id=row["definition_id"],
                sub_status=row["sub_status"],
            )
        await self._upsert_rows(tx.conn, instances, ["tenant_id", "id"], list(to_write.values()))
        return stored, result

    async def _delete_instances(
        self,
        tx: _Tx,
        tenant_id: str,
        instance_ids: Iterable[str],
        source_id: str | None = None,
    ) -> WriteResult:
        """Tombstone live instances (only `source_id`'s, when given)."""
        result = WriteResult()
        existing = await self._select_by_ids(
            tx.conn, instances, instances.c.id, tenant_id, list(instance_ids)
        )
        live = [
            row
            for row in existing.values()
            if row["deleted_at"] is None and source_id in (None, row["source_id"])
        ]
        for row in live:
            tx.count(tenant_id, row, -1)
            tx.record(
                tenant_id,
                EntityKind.INSTANCE,
                row["id"],
                ChangeOp.DELETE,
                row["revision"] + 1,
                instance_wire(row),
                definition_id=row["definition_id"],
                sub_status=row["sub_status"],
            )
        for chunk in chunks([row["id"] for row in live]):
            await tx.conn.execute(
                instances.update()
                .where(instances.c.tenant_id == tenant_id, instances.c.id.in_(chunk))
                .values(deleted_at=tx.now, revision=instances.c.revision + 1)
            )
        result.deleted = len(live)
        return result

    async def _live_instance_row(
        self, conn: AsyncConnection, tenant_id: str, instance_id: str
    ) -> dict[str, Any] | None:
        parameters = {"tenant_id": tenant_id, "instance_id": instance_id}
        found = await self._driver_form(_live_instance).mappings(conn, parameters)
        return found[0] if found else None

    # -- sync ------------------------------------------------------------------------------

    async def apply_sync_batch(self, tenant_id: str, batch: SyncBatch) -> WriteResult:
        """Apply one sync step atomically: rows, deletions, and the source's new state.

        Everything is tagged with the batch's source, and deletions only touch that
        source's rows. The state (and the source's engine entry) is saved in the same
        transaction, so a cursor never runs ahead of the rows it covers.
        """
        source_id = batch.source_id
        async with self._writing() as tx:
            result = WriteResult()
            if batch.definitions:
                tagged = [d.model_copy(update={"source_id": source_id}) for d in batch.definitions]
                _, written = await self._upsert_definitions(tx, tenant_id, tagged)
                result.add(written)
            if batch.instances:
                _, written = await self._put_instances(tx, tenant_id, batch.instances, source_id)
                result.add(written)
            if batch.deleted_instance_ids:
                result.add(
                    await self._delete_instances(
                        tx, tenant_id, batch.deleted_instance_ids, source_id
                    )
                )
            if batch.deleted_definition_ids:
                result.add(
                    await self._delete_definitions(
                        tx, tenant_id, batch.deleted_definition_ids, source_id
                    )
                )
            if batch.state is not None:
                await self._save_source_state(tx, tenant_id, batch.state)
        return result

    async def _save_source_state(self, tx: _Tx, tenant_id: str, state: SourceState) -> None:
        state = state.model_copy(update={"updated_at": tx.now})
        await self._upsert_rows(
            tx.conn,
            sync_state,
            ["tenant_id", "source_id"],
            [
                {
                    "tenant_id": tenant_id,
                    "source_id": state.source_id,
                    "state": state.to_wire(),
                    "updated_at": tx.now,
                }
            ],
        )
        await self._put_engine(tx, tenant_id, state.source_id, state.engine_report())

    async def source_states(self, tenant_id: str) -> list[SourceState]:
        async with self._reading() as conn:
            rows = await self._driver_form(_source_states).mappings(conn, {"tenant_id": tenant_id})
        return [SourceState.model_validate(row["state"]) for row in rows]

    async def source_state(self, tenant_id: str, source_id: str) -> SourceState | None:
        async with self._reading() as conn:
            state = (
                await conn.execute(
                    sa.select(sync_state.c.state).where(
                        sync_state.c.tenant_id == tenant_id, sync_state.c.source_id == source_id
                    )
                )
            ).scalar()
        return SourceState.model_validate(state) if state is not None else None

    async def source_counts(self, tenant_id: str) -> dict[str, dict[str, int]]:
        """Live definitions and instances per source: `{source: {"definitions": n, …}}`."""
        counts: dict[str, dict[str, int]] = {}
        async with self._reading() as conn:
            definition_rows = await conn.execute(
                sa.select(definitions.c.source_id, sa.func.count())
                .where(
                    definitions.c.tenant_id == tenant_id,
                    definitions.c.deleted_at.is_(None),
                    definitions.c.source_id.is_not(None),
                )
                .group_by(definitions.c.source_id)
            )
            for source_id, count in definition_rows:
                counts.setdefault(source_id, {"definitions": 0, "instances": 0})["definitions"] = (
                    count
                )
            instance_rows = await conn.execute(
                sa.select(instance_counts.c.source_id, sa.func.sum(instance_counts.c.count))
                .where(instance_counts.c.tenant_id == tenant_id, instance_counts.c.source_id != "")
                .group_by(instance_counts.c.source_id)
            )
            for source_id, count in instance_rows:
                if count:
                    counts.setdefault(source_id, {"definitions": 0, "instances": 0})[
                        "instances"
                    ] = int(count)
        return counts

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
        """A source's live instances in id order after `after_id`: those created in
        [created_from, created_before), or only those that have not ended (`active`). What
        the sync compares with ELSA's listing."""
        conditions = [
            instances.c.tenant_id == tenant_id,
            instances.c.source_id == source_id,
            instances.c.deleted_at.is_(None),
        ]
        if created_from is not None:
            conditions.append(instances.c.created_at >= created_from)
        if created_before is not None:
            conditions.append(instances.c.created_at < created_before)
        if active:
            ended = [sub_status.value for sub_status in ENDED_SUB_STATUSES]
            conditions.append(
                sa.or_(instances.c.sub_status.is_(None), instances.c.sub_status.not_in(ended))
            )
        if after_id is not None:
            conditions.append(instances.c.id > after_id)
        columns = [instances.c[name] for name in ("id", "created_at", "updated_at", "sub_status")]
        async with self._reading() as conn:
            rows = await conn.execute(
                sa.select(*columns).where(*conditions).order_by(instances.c.id).limit(limit)
            )
            return [
                InstancePosition(
                    id=row_id, created_at=created, updated_at=updated, sub_status=sub_status
                )
                for row_id, created, updated, sub_status in rows
            ]

    async def lead(self, name: str) -> Leadership | None:
        """Try to become the one process doing `name` (e.g. syncing a source).

        PostgreSQL: a session advisory lock on a connection kept for the purpose, released
        when the process or its connection dies. SQLite: an exclusive lock on a file beside
        the database. Returns None when another process leads.
        """
        if self.is_sqlite:
            return FileLeadership.acquire(self._engine.url.database, name)
        return await AdvisoryLeadership.acquire(self._engine, name)

    # -- engines ---------------------------------------------------------------------------

    async def put_engine(
        self, tenant_id: str, engine_id: str, report: EngineReport
    ) -> tuple[Engine, bool]:
        """Register an engine or record its heartbeat; fields not sent keep their value.
        Returns the engine and whether it is newly registered."""
        async with self._writing() as tx:
            return await self._put_engine(tx, tenant_id, engine_id, report)

    async def _put_engine(
        self, tx: _Tx, tenant_id: str, engine_id: str, report: EngineReport
    ) -> tuple[Engine, bool]:
        old = (
            (
                await tx.conn.execute(
                    sa.select(engines).where(
                        engines.c.tenant_id == tenant_id, engines.c.id == engine_id
                    )
                )
            )
            .mappings()
            .first()
        )
        given = report.model_dump(exclude_none=True)
        row: dict[str, Any] = {
            "tenant_id": tenant_id,
            "id": engine_id,
            "name": None,
            "kind": None,
            "version": None,
            "state": None,
            "stats": {},
            "heartbeat_interval_seconds": DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
            "registered_at": tx.now,
            **(dict(old) if old is not None else {}),
            **given,
            "last_heartbeat_at": tx.now,
        }
        await self._upsert_rows(tx.conn, engines, ["tenant_id", "id"], [row])
        engine = Engine.model_validate(row)
        engine.online = engine.is_online(tx.now)
        return engine, old is None

    async def get_engine(self, tenant_id: str, engine_id: str) -> Engine | None:
        found = await self._engines(
            _engine_of_tenant, {"tenant_id": tenant_id, "engine_id": engine_id}
        )
        return found[0] if found else None

    async def list_engines(self, tenant_id: str) -> list[Engine]:
        """Every engine of a tenant, `online` derived from its last heartbeat."""
        return await self._engines(_engines_of_tenant, {"tenant_id": tenant_id})

    async def _engines(
        self, statement: sa.Select[Any], parameters: Mapping[str, Any]
    ) -> list[Engine]:
        now = now_ms()
        async with self._reading() as conn:
            rows = await self._driver_form(statement).mappings(conn, parameters)
        found = [Engine.model_validate(row) for row in rows]
        for engine in found:
            engine.online = engine.is_online(now)
        return found

    async def delete_engine(self, tenant_id: str, engine_id: str) -> bool:
        """Forget an engine and its events; False when there is no such engine."""
        async with self._writing() as tx:
            await tx.conn.execute(
                engine_events.delete().where(
                    engine_events.c.tenant_id == tenant_id, engine_events.c.engine_id == engine_id
                )
            )
            deleted = await tx.conn.execute(
                engines.delete().where(engines.c.tenant_id == tenant_id, engines.c.id == engine_id)
            )
            return bool(deleted.rowcount)

    async def add_engine_events(
        self,
        tenant_id: str,
        engine_id: str,
        events: Sequence[EngineEventWrite],
        *,
        keep: int,
        max_age_ms: int,
    ) -> int | None:
        """Store events of a registered engine (None if it is not registered); returns how
        many of them it keeps. Events older than `max_age_ms` are not kept, and the engine's
        events are trimmed to the newest `keep`: an event the trim removes again at once
        (one older than the `keep` newest) does not count."""
        async with self._writing() as tx:
            registered = (
                await tx.conn.execute(
                    sa.select(engines.c.id).where(
                        engines.c.tenant_id == tenant_id, engines.c.id == engine_id
                    )
                )
            ).first()
            if registered is None:
                return None
            oldest_kept = tx.now - max_age_ms
            rows = [
                {
                    "tenant_id": tenant_id,
                    "engine_id": engine_id,
                    "id": event.id or str(uuid.uuid4()),
                    "type": event.type,
                    "timestamp": event.timestamp or tx.now,
                    "issue_number": event.issue_number,
                    "data": event.data,
                }
                for event in events
                if (event.timestamp or tx.now) >= oldest_kept
            ]
            added: set[int] = set()
            for chunk in chunks(rows):
                statement = (
                    self._insert(engine_events)
                    .on_conflict_do_nothing(index_elements=["tenant_id", "engine_id", "id"])
                    .returning(engine_events.c.seq)
                )
                added.update((await tx.conn.execute(statement, chunk)).scalars())
            mine = sa.and_(
                engine_events.c.tenant_id == tenant_id, engine_events.c.engine_id == engine_id
            )
            newest_kept = (
                sa.select(engine_events.c.seq)
                .where(mine)
                .order_by(engine_events.c.timestamp.desc(), engine_events.c.seq.desc())
                .limit(keep)
            )
            trimmed = await tx.conn.execute(
                engine_events.delete()
                .where(
                    mine,
                    sa.or_(
                        engine_events.c.timestamp < oldest_kept,
                        engine_events.c.seq.not_in(newest_kept.scalar_subquery()),
                    ),
                )
                .returning(engine_events.c.seq)
            )
            return len(added.difference(trimmed.scalars()))

    async def recent_engine_events(
        self, tenant_id: str, engine_id: str | None = None, *, limit: int, offset: int = 0
    ) -> list[EngineEvent]:
        """Events newest first, of one engine or of all."""
        statement = _recent_events if engine_id is None else _recent_events_of_engine
        parameters = {
            "tenant_id": tenant_id,
            "engine_id": engine_id,
            "limit": limit,
            "offset": offset,
        }
        async with self._reading() as conn:
            rows = await self._driver_form(statement).mappings(conn, parameters)
        return [EngineEvent.model_validate(row) for row in rows]

    async def engine_events_page(
        self, tenant_id: str, engine_id: str | None, *, limit: int, offset: int = 0
    ) -> tuple[list[EngineEvent], int]:
        """Events newest first (of one engine, or of all), and how many there are."""
        statement = _events_total if engine_id is None else _events_total_of_engine
        parameters = {"tenant_id": tenant_id, "engine_id": engine_id}
        async with self.reading_together(), self._reading() as conn:
            events = await self.recent_engine_events(
                tenant_id, engine_id, limit=limit, offset=offset
            )
            [(total,)] = await self._driver_form(statement).rows(conn, parameters)
        return events, total

    # -- dashboard -------------------------------------------------------------------------

    async def instance_counts(self, tenant_id: str) -> dict[str, dict[str | None, int]]:
        """Live instances per definition and sub-status, `{definition_id: {sub_status or
        None: count}}`, from the kept counts: one small GROUP BY, whatever the row count.
        SQL spreads each definition's counts over one row, a column per sub-status."""
        async with self._reading() as conn:
            rows = await self._driver_form(_counts_by_definition).rows(
                conn, {"tenant_id": tenant_id}
            )
        counts: dict[str, dict[str | None, int]] = {}
        for definition_id, *row in rows:
            group = {key: count for key, count in zip(_COUNTED, row, strict=True) if count}
            if group:  # kept counts that went down to 0 stay as rows
                counts[definition_id] = group
        return counts

    async def catalog_totals(self, tenant_id: str) -> CatalogTotals:
        """How many live definitions a tenant has, and live instances per sub-status: one
        statement (the summary's reads are its cost)."""
        async with self._reading() as conn:
            rows = await self._driver_form(_catalog_totals).rows(conn, {"tenant_id": tenant_id})
        return CatalogTotals(
            definitions=rows[0][0],
            instances={sub_status or None: int(count) for _, sub_status, count in rows if count},
        )

    async def tenant_has_data(self, tenant_id: str) -> bool:
        """Whether a tenant holds any definition, instance, source state or engine, deleted
        ones too: a key made for a tenant holding none reads empty lists."""
        held = [
            sa.exists().where(table.c.tenant_id == tenant_id)
            for table in (definitions, instances, sync_state, engines)
        ]
        async with self._reading() as conn:
            return bool((await conn.execute(sa.select(sa.or_(*held)))).scalar())

    # -- API keys --------------------------------------------------------------------------

    async def create_api_key(
        self, tenant_id: str, scopes: Sequence[Scope], name: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new key and its secret token — shown once, stored only as a hash."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        row = {
            "id": key_id,
            "tenant_id": tenant_id,
            "name": name,
            "scopes": sorted({scope.value for scope in scopes}),
            "secret_hash": _secret_hash(secret),
            "created_at": now_ms(),
            "revoked_at": None,
        }
        async with self._writing() as tx:
            await tx.conn.execute(api_keys.insert(), row)
        return ApiKey.model_validate(row), f"{API_KEY_PREFIX}{key_id}_{secret}"

    async def list_api_keys(self) -> list[ApiKey]:
        async with self._reading() as conn:
            rows = await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))
            return [ApiKey.model_validate(dict(row)) for row in rows.mappings()]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke a key; False if there is no such key or it was already revoked."""
        async with self._writing() as tx:
            result = await tx.conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=tx.now)
            )
            return bool(result.rowcount)

    async def has_active_api_keys(self) -> bool:
        async with self._reading() as conn:
            found = await conn.execute(
                sa.select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)
            )
            return found.first() is not None

    async def verify_api_key(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None (unknown, malformed or revoked)."""
        key_id, _, secret = token.removeprefix(API_KEY_PREFIX).partition("_")
        if not token.startswith(API_KEY_PREFIX) or not key_id or not secret:
            return None
        async with self._reading() as conn:
            row = (
                (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)))
                .mappings()
                .first()
            )
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(row["secret_hash"], _secret_hash(secret)):
            return None
        return ApiKey.model_validate(dict(row))

    # -- retention -------------------------------------------------------------------------

    async def purge(self, cutoffs: PurgeCutoffs, *, batch: int = 5_000) -> dict[str, int]:
        """Delete, in bounded batches, what retention says is old enough: tombstones,
        change-log rows, engine events, and (only if a cutoff is set) ended instances.
        Returns how many rows of each kind went."""
        targets: list[tuple[str, sa.Table, sa.ColumnElement[bool]]] = [
            ("tombstoned definitions", definitions, definitions.c.deleted_at < cutoffs.tombstones),
            ("tombstoned instances", instances, instances.c.deleted_at < cutoffs.tombstones),
            ("changes", changes, changes.c.at < cutoffs.changes),
            ("engine events", engine_events, engine_events.c.timestamp < cutoffs.engine_events),
        ]
        purged: dict[str, int] = {}
        for name, table, condition in targets:
            purged[name] = 0
            key = sa.tuple_(*table.primary_key.columns)
            while True:
                async with self._writing() as tx:
                    chosen = sa.select(*table.primary_key.columns).where(condition).limit(batch)
                    result = await tx.conn.execute(table.delete().where(key.in_(chosen)))
                purged[name] += result.rowcount
                if result.rowcount < batch:
                    break
        purged["ended instances"] = (
            0
            if cutoffs.ended_instances is None
            else await self._purge_ended_instances(cutoffs.ended_instances, batch)
        )
        return purged

    async def _purge_ended_instances(self, finished_before: int, batch: int) -> int:
        """Delete live ended instances (keeping the counts in step), batch by batch."""
        ended = [status.value for status in ENDED_SUB_STATUSES]
        purged = 0
        while True:
            async with self._writing() as tx:
                rows = (
                    (
                        await tx.conn.execute(
                            sa.select(
                                instances.c.tenant_id,
                                instances.c.id,
                                instances.c.source_id,
                                instances.c.definition_id,
                                instances.c.sub_status,
                            )
                            .where(
                                instances.c.deleted_at.is_(None),
                                instances.c.sub_status.in_(ended),
                                instances.c.finished_at < finished_before,
                            )
                            .limit(batch)
                        )
                    )
                    .mappings()
                    .all()
                )
                for row in rows:
                    tx.count(row["tenant_id"], dict(row), -1)
                keys = [(row["tenant_id"], row["id"]) for row in rows]
                if keys:
                    await tx.conn.execute(
                        instances.delete().where(
                            sa.tuple_(instances.c.tenant_id, instances.c.id).in_(keys)
                        )
                    )
            purged += len(rows)
            if len(rows) < batch:
                return purged

    # -- change log ------------------------------------------------------------------------

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
        conditions: list[sa.ColumnElement[bool]] = [changes.c.seq > seq]
        if tenant_id is not None:
            conditions.append(changes.c.tenant_id == tenant_id)
        if entity is not None:
            conditions.append(changes.c.entity == entity.value)
        if entity_id is not None:
            conditions.append(changes.c.entity_id == entity_id)
        async with self._reading() as conn:
            rows = (
                await conn.execute(
                    sa.select(changes).where(*conditions).order_by(changes.c.seq).limit(limit)
                )
            ).mappings()
            return [Change.model_validate(dict(row)) for row in rows]

    async def last_seq(self) -> int:
        """The newest change seq (0 for an empty log)."""
        async with self._reading() as conn:
            return (await conn.execute(sa.select(sa.func.max(changes.c.seq)))).scalar() or 0

    async def first_seq(self) -> int | None:
        """The oldest change seq still in the log (retention purges older ones)."""
        async with self._reading() as conn:
            first: int | None = (await conn.execute(sa.select(sa.func.min(changes.c.seq)))).scalar()
            return first

    # -- shared helpers --------------------------------------------------------------------

    async def _select_by_ids(
        self,
        conn: AsyncConnection,
        table: sa.Table,
        id_column: sa.Column[str],
        tenant_id: str,
        ids: Sequence[str],
    ) -> dict[str, dict[str, Any]]:
        """Stored rows (live or tombstoned) by id, for the ids that exist.

        PostgreSQL gets the ids as one array parameter: one statement for any number of
        ids, planned once, instead of a list of hundreds of parameters."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(dict.fromkeys(ids))):
            matches = (
                id_column.in_(chunk)
                if self.is_sqlite
                else id_column == sa.any_(sa.bindparam("ids", chunk, type_=_ID_ARRAY))
            )
            rows = await conn.execute(
                sa.select(table).where(table.c.tenant_id == tenant_id, matches)
            )
            for row in rows.mappings():
                found[row[id_column.name]] = dict(row)
        return found

    async def _upsert_rows(
        self,
        conn: AsyncConnection,
        table: sa.Table,
        key: list[str],
        rows: list[dict[str, Any]],
    ) -> None:
        """Insert rows, overwriting every column of those whose key already exists."""
        statement = self._bulk_statement(table, [column.name for column in table.columns], key)
        await statement.run(conn, rows)

    def _bulk_statement(
        self, table: sa.Table, columns: list[str], conflict_key: list[str] | None = None
    ) -> BulkStatement:
        """An INSERT of `columns` (an upsert on `conflict_key`), compiled once."""
        cache_key = (table.name, tuple(columns), tuple(conflict_key or ()))
        found = self._bulk_statements.get(cache_key)
        if found is None:
            statement = self._insert(table).values({name: sa.bindparam(name) for name in columns})
            if conflict_key is not None:
                statement = statement.on_conflict_do_update(
                    index_elements=conflict_key,
                    set_={
                        name: statement.excluded[name]
                        for name in columns
                        if name not in conflict_key
                    },
                )
            found = BulkStatement(self._driver_form(statement), table)
            self._bulk_statements[cache_key] = found
        return found

    def _driver_form(self, statement: sa.ClauseElement) -> DriverSql:
        """The statement compiled for this store's database, once."""
        found = self._driver_sql.get(statement)
        if found is None:
            found = self._driver_sql[statement] = DriverSql.of(statement, self._engine.dialect)
        return found


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _ping_when_idle(engine: AsyncEngine) -> None:
    """SQLAlchemy's `pool_pre_ping`, for connections that sat idle only.

    A connection handed out is pinged first if it was back in the pool for longer than
    `PING_AFTER_IDLE_SECONDS`; if it does not answer (the database restarted or dropped
    it), every connection opened before is renewed before the request uses one. Under load
    connections go back and forth within milliseconds and skip the round trip, which was
    about a fifth of a page's server CPU. A restart under load fails the statements in
    flight either way, and the first disconnect seen renews the pool the same way."""

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool renews every connection opened before now and hands out a new one.
            raise InvalidatePoolError(str(exc)) from exc


def _tune_sqlite(engine: AsyncEngine) -> None:
    """WAL, relaxed fsync, a busy timeout, foreign keys; BEGIN IMMEDIATE for writes.

    pysqlite's own transaction handling is switched off so that SQLAlchemy's `begin`
    decides how a transaction starts: a write takes the write lock up front instead of
    upgrading a read lock later, which is what makes SQLite answer "database is locked".
    Reads start no transaction: each statement is its own snapshot, as on PostgreSQL, and
    a BEGIN would cost one more trip to aiosqlite's thread per request.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: SyncConnection) -> None:
        if conn.get_execution_options().get("tamma_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
