"""The Store: the only code that speaks SQL, one implementation for SQLite and PostgreSQL.

Every write runs in one transaction that also appends to the change log, and only when the
content really changed (compared by content hash). Writes are serialized — an asyncio lock
in the process, `BEGIN IMMEDIATE` on SQLite, a transaction-scoped advisory lock on
PostgreSQL — so change sequence numbers are handed out in commit order and a reader that
follows the log by `seq` can never skip a change that commits late.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tamma_sync.models import (
    ENDED_SUB_STATUSES,
    Change,
    ChangeOp,
    Definition,
    DefinitionWrite,
    EntityKind,
    Instance,
    InstancePatch,
    InstanceWrite,
    SubStatus,
    content_hash,
    now_ms,
    sub_status_from_legacy,
)
from tamma_sync.store import migrations
from tamma_sync.store.tables import changes, definitions, instances

log = logging.getLogger(__name__)

#: Key of the PostgreSQL advisory lock that serializes writers across processes.
WRITE_LOCK_KEY = 0x7A11A5C0
#: Key of the PostgreSQL advisory lock held while migrating, so replicas starting
#: together do not race.
MIGRATION_LOCK_KEY = 0x7A11A5C1
#: Rows per statement when reading or writing in bulk (well under SQLite's variable limit).
CHUNK = 500
SQLITE_BUSY_TIMEOUT_MS = 30_000

CommitListener = Callable[[int], None]
_T = TypeVar("_T")
OrderBy = Literal["createdAt", "updatedAt"]

_INSTANCE_CONTENT = (
    "definition_id",
    "status",
    "sub_status",
    "current_activity",
    "variables",
    "correlation_id",
    "name",
    "incident_count",
    "definition_version",
    "definition_version_id",
    "created_at",
    "finished_at",
)
_DEFINITION_CONTENT = (
    "name",
    "version",
    "description",
    "activities",
    "variables",
    "version_id",
    "is_published",
    "is_latest",
    "created_at",
)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class InstanceQuery:
    """What a list of instances is filtered and ordered by, and which page of it."""

    definition_id: str | None = None
    sub_statuses: Sequence[SubStatus] | None = None
    correlation_id: str | None = None
    updated_since: int | None = None
    order_by: OrderBy = "createdAt"
    descending: bool = False
    limit: int = 50
    offset: int = 0
    after: tuple[int, str] | None = None
    """Keyset position: the (order value, id) of the last row already seen."""
    with_total: bool = True


@dataclass(frozen=True)
class InstancePage:
    items: list[Instance]
    total: int | None
    next_after: tuple[int, str] | None
    """Keyset position to continue from, or None when this page is the last."""


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

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10) -> Store:
        """Open (lazily) the database at an async SQLAlchemy URL."""
        parsed = make_url(url)
        options: dict[str, Any] = {
            "json_serializer": _json_dumps,
            "json_deserializer": orjson.loads,
        }
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, **options)
            _tune_sqlite(engine)
        else:
            engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, **options
            )
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
            conn = await plain_conn.execution_options(tamma_write=True)
            if not self.is_sqlite:
                await conn.execute(
                    sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            try:
                await conn.run_sync(migrations.upgrade_to_head)
                await conn.commit()
            finally:
                if not self.is_sqlite:
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

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[_Tx]:
        """One serialized write transaction; change rows are appended just before commit."""
        async with self._write_lock, self._engine.connect() as conn:
            write_conn = await conn.execution_options(tamma_write=True)
            last_seq: int | None = None
            async with write_conn.begin():
                if not self.is_sqlite:
                    await write_conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY}
                    )
                tx = _Tx(write_conn, now=now_ms())
                yield tx
                if tx.pending_changes:
                    result = await write_conn.execute(
                        changes.insert().returning(changes.c.seq), tx.pending_changes
                    )
                    last_seq = max(result.scalars().all())
        if last_seq is not None:
            for listener in self._commit_listeners:
                listener(last_seq)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction: one consistent snapshot for a list and its count."""
        async with self._engine.connect() as conn:
            yield conn

    # -- definitions -----------------------------------------------------------------------

    async def upsert_definitions(
        self, tenant_id: str, writes: Sequence[DefinitionWrite]
    ) -> list[tuple[Definition, bool]]:
        """Create or update definitions; returns each stored definition and whether it is new.

        Fields a write leaves as None keep their stored values (the original API's shallow
        merge). A write that changes nothing stores nothing.
        """
        async with self._writing() as tx:
            return await self._upsert_definitions(tx, tenant_id, writes)

    async def _upsert_definitions(
        self, tx: _Tx, tenant_id: str, writes: Sequence[DefinitionWrite]
    ) -> list[tuple[Definition, bool]]:
        existing = await self._select_by_ids(
            tx.conn, definitions, definitions.c.definition_id, tenant_id, [w.id for w in writes]
        )
        results: list[tuple[Definition, bool]] = []
        to_write: dict[str, dict[str, Any]] = {}
        for write in writes:
            old = existing.get(write.id)
            live = old is not None and old["deleted_at"] is None
            row = _merge_definition(tenant_id, write, old if live else None)
            row["content_hash"] = content_hash({k: row[k] for k in _DEFINITION_CONTENT})
            if live and old is not None and old["content_hash"] == row["content_hash"]:
                results.append((_definition(old), False))
                continue
            row["revision"] = (old["revision"] + 1) if old is not None else 1
            row["synced_at"] = tx.now
            row["deleted_at"] = None
            existing[write.id] = to_write[write.id] = row
            definition = _definition(row)
            tx.record(
                tenant_id,
                EntityKind.DEFINITION,
                write.id,
                ChangeOp.UPDATE if live else ChangeOp.CREATE,
                row["revision"],
                definition.to_wire(),
                definition_id=write.id,
            )
            results.append((definition, not live))
        await self._upsert_rows(
            tx.conn, definitions, ["tenant_id", "definition_id"], list(to_write.values())
        )
        return results

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
        return _definition(row) if row is not None else None

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
            return [_definition(row) for row in rows]

    async def delete_definitions(self, tenant_id: str, definition_ids: Sequence[str]) -> int:
        """Tombstone definitions and every live instance of theirs; returns definitions deleted."""
        async with self._writing() as tx:
            result = await self._delete_definitions(tx, tenant_id, definition_ids)
        return result.deleted

    async def _delete_definitions(
        self, tx: _Tx, tenant_id: str, definition_ids: Sequence[str]
    ) -> WriteResult:
        result = WriteResult()
        live = {
            key: row
            for key, row in (
                await self._select_by_ids(
                    tx.conn, definitions, definitions.c.definition_id, tenant_id, definition_ids
                )
            ).items()
            if row["deleted_at"] is None
        }
        if not live:
            return result
        for chunk in _chunks(list(live)):
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
            result.add(await self._delete_instances(tx, tenant_id, orphan_ids))
        for definition_id, row in live.items():
            tx.record(
                tenant_id,
                EntityKind.DEFINITION,
                definition_id,
                ChangeOp.DELETE,
                row["revision"] + 1,
                _definition(row).to_wire(),
                definition_id=definition_id,
            )
        for chunk in _chunks(list(live)):
            await tx.conn.execute(
                definitions.update()
                .where(definitions.c.tenant_id == tenant_id, definitions.c.definition_id.in_(chunk))
                .values(deleted_at=tx.now, revision=definitions.c.revision + 1)
            )
        result.deleted = len(live)
        return result

    # -- instances -------------------------------------------------------------------------

    async def put_instances(
        self, tenant_id: str, writes: Sequence[InstanceWrite]
    ) -> tuple[list[Instance], WriteResult]:
        """Create or replace whole instances; unchanged ones are left exactly as they were."""
        async with self._writing() as tx:
            return await self._put_instances(tx, tenant_id, writes)

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
            write = patch.apply_to(_instance(row))
            stored, _ = await self._put_instances(tx, tenant_id, [write])
            return stored[0]

    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance | None:
        async with self._reading() as conn:
            row = await self._live_instance_row(conn, tenant_id, instance_id)
        return _instance(row) if row is not None else None

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
        order_column = (
            instances.c.created_at if query.order_by == "createdAt" else (instances.c.updated_at)
        )
        conditions = self._instance_conditions(tenant_id, query)
        page_conditions = list(conditions)
        if query.after is not None:
            position = sa.tuple_(order_column, instances.c.id)
            bound = sa.tuple_(sa.literal(query.after[0]), sa.literal(query.after[1]))
            page_conditions.append(position < bound if query.descending else position > bound)
        ordering = (
            [order_column.desc(), instances.c.id.desc()]
            if query.descending
            else [order_column.asc(), instances.c.id.asc()]
        )
        statement = (
            sa.select(instances)
            .where(*page_conditions)
            .order_by(*ordering)
            .limit(query.limit + 1)
            .offset(0 if query.after is not None else query.offset)
        )
        async with self._reading() as conn:
            rows = list((await conn.execute(statement)).mappings())
            total = None
            if query.with_total:
                total = (
                    await conn.execute(sa.select(sa.func.count()).where(*conditions))
                ).scalar_one()
        items = [_instance(row) for row in rows[: query.limit]]
        next_after = None
        if len(rows) > query.limit and items:
            last = items[-1]
            next_after = (
                last.created_at if query.order_by == "createdAt" else last.updated_at,
                last.id,
            )
        return InstancePage(items=items, total=total, next_after=next_after)

    @staticmethod
    def _instance_conditions(tenant_id: str, query: InstanceQuery) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = [
            instances.c.tenant_id == tenant_id,
            instances.c.deleted_at.is_(None),
        ]
        if query.definition_id is not None:
            conditions.append(instances.c.definition_id == query.definition_id)
        if query.sub_statuses is not None:
            conditions.append(instances.c.sub_status.in_([s.value for s in query.sub_statuses]))
        if query.correlation_id is not None:
            conditions.append(instances.c.correlation_id == query.correlation_id)
        if query.updated_since is not None:
            conditions.append(instances.c.updated_at >= query.updated_since)
        return conditions

    async def _put_instances(
        self, tx: _Tx, tenant_id: str, writes: Sequence[InstanceWrite]
    ) -> tuple[list[Instance], WriteResult]:
        result = WriteResult()
        existing = await self._select_by_ids(
            tx.conn, instances, instances.c.id, tenant_id, [w.id for w in writes]
        )
        stored: list[Instance] = []
        to_write: dict[str, dict[str, Any]] = {}
        for write in writes:
            old = existing.get(write.id)
            live = old if old is not None and old["deleted_at"] is None else None
            row = _merge_instance(tenant_id, write, live, tx.now)
            if live is not None and live["content_hash"] == row["content_hash"]:
                stored.append(_instance(live))
                result.unchanged += 1
                continue
            row["revision"] = (old["revision"] + 1) if old is not None else 1
            existing[write.id] = to_write[write.id] = row
            instance = _instance(row)
            stored.append(instance)
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
                instance.to_wire(),
                definition_id=instance.definition_id,
                sub_status=row["sub_status"],
            )
        await self._upsert_rows(tx.conn, instances, ["tenant_id", "id"], list(to_write.values()))
        return stored, result

    async def _delete_instances(
        self, tx: _Tx, tenant_id: str, instance_ids: Iterable[str]
    ) -> WriteResult:
        result = WriteResult()
        existing = await self._select_by_ids(
            tx.conn, instances, instances.c.id, tenant_id, list(instance_ids)
        )
        live = [row for row in existing.values() if row["deleted_at"] is None]
        for row in live:
            tx.record(
                tenant_id,
                EntityKind.INSTANCE,
                row["id"],
                ChangeOp.DELETE,
                row["revision"] + 1,
                _instance(row).to_wire(),
                definition_id=row["definition_id"],
                sub_status=row["sub_status"],
            )
        for chunk in _chunks([row["id"] for row in live]):
            await tx.conn.execute(
                instances.update()
                .where(instances.c.tenant_id == tenant_id, instances.c.id.in_(chunk))
                .values(deleted_at=tx.now, revision=instances.c.revision + 1)
            )
        result.deleted = len(live)
        return result

    async def _live_instance_row(
        self, conn: AsyncConnection, tenant_id: str, instance_id: str
    ) -> sa.RowMapping | None:
        return (
            (
                await conn.execute(
                    sa.select(instances).where(
                        instances.c.tenant_id == tenant_id,
                        instances.c.id == instance_id,
                        instances.c.deleted_at.is_(None),
                    )
                )
            )
            .mappings()
            .first()
        )

    # -- change log ------------------------------------------------------------------------

    async def changes_after(
        self,
        seq: int,
        *,
        tenant_id: str | None = None,
        entity_id: str | None = None,
        limit: int = 500,
    ) -> list[Change]:
        """Change-log rows with a seq greater than `seq`, oldest first."""
        conditions: list[sa.ColumnElement[bool]] = [changes.c.seq > seq]
        if tenant_id is not None:
            conditions.append(changes.c.tenant_id == tenant_id)
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

    # -- shared helpers --------------------------------------------------------------------

    @staticmethod
    async def _select_by_ids(
        conn: AsyncConnection,
        table: sa.Table,
        id_column: sa.Column[str],
        tenant_id: str,
        ids: Sequence[str],
    ) -> dict[str, dict[str, Any]]:
        """Stored rows (live or tombstoned) by id, for the ids that exist."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            rows = await conn.execute(
                sa.select(table).where(table.c.tenant_id == tenant_id, id_column.in_(chunk))
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
        for chunk in _chunks(rows):
            statement = self._insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=key,
                set_={
                    column.name: statement.excluded[column.name]
                    for column in table.columns
                    if column.name not in key
                },
            )
            await conn.execute(statement, chunk)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether an error means the database cannot be reached right now (worth a retry)."""
    if isinstance(exc, OperationalError | InterfaceError | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _chunks(items: list[_T], size: int = CHUNK) -> Iterable[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _merge_definition(
    tenant_id: str, write: DefinitionWrite, live: dict[str, Any] | None
) -> dict[str, Any]:
    """The row a definition write leads to: the write's fields over the stored ones."""
    given = write.model_dump(exclude_none=True, exclude={"id"})
    if live is None and "name" not in given:
        raise ValueError(f"definition {write.id!r} is new and has no name")
    base = {name: (live[name] if live is not None else None) for name in _DEFINITION_CONTENT}
    base["source_id"] = live["source_id"] if live is not None else None
    return {"tenant_id": tenant_id, "definition_id": write.id, **base, **given}


def _merge_instance(
    tenant_id: str, write: InstanceWrite, live: dict[str, Any] | None, now: int
) -> dict[str, Any]:
    """The row an instance write leads to, with its content hash.

    `subStatus` comes from the writer or from its legacy `status`; `createdAt` from the
    writer, else the stored one, else now; `updatedAt` from the writer, else now — unless
    nothing changed, which the caller detects by the hash and then writes nothing.
    """
    sub_status = write.sub_status or sub_status_from_legacy(write.status)
    finished_at = write.finished_at
    if finished_at is None and sub_status in ENDED_SUB_STATUSES:
        already_ended = live is not None and live["sub_status"] in ENDED_SUB_STATUSES
        finished_at = live["finished_at"] if already_ended and live is not None else None
        finished_at = finished_at or write.updated_at or now
    row: dict[str, Any] = {
        "tenant_id": tenant_id,
        "id": write.id,
        "definition_id": write.definition_id,
        "status": write.status,
        "sub_status": sub_status.value if sub_status is not None else None,
        "current_activity": write.current_activity,
        "variables": write.variables if write.variables is not None else {},
        "correlation_id": write.correlation_id,
        "name": write.name,
        "incident_count": write.incident_count,
        "definition_version": write.definition_version,
        "definition_version_id": write.definition_version_id,
        "created_at": write.created_at or (live["created_at"] if live is not None else now),
        "finished_at": finished_at,
        "updated_at": write.updated_at or now,
        "source_id": write.source_id,
        "deleted_at": None,
    }
    row["content_hash"] = content_hash({k: row[k] for k in _INSTANCE_CONTENT})
    return row


def _definition(row: sa.RowMapping | dict[str, Any]) -> Definition:
    return Definition.model_validate({**row, "id": row["definition_id"]})


def _instance(row: sa.RowMapping | dict[str, Any]) -> Instance:
    return Instance.model_validate(dict(row))


def _tune_sqlite(engine: AsyncEngine) -> None:
    """WAL, relaxed fsync, a busy timeout, foreign keys; BEGIN IMMEDIATE for writes.

    pysqlite's own transaction handling is switched off so that SQLAlchemy's `begin`
    decides how a transaction starts: a write takes the write lock up front instead of
    upgrading a read lock later, which is what makes SQLite answer "database is locked".
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
        immediate = conn.get_execution_options().get("tamma_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
