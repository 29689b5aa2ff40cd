"""The catalog: workflow definitions, and what the dashboard reads about them — the kept
instance counts per definition, the totals, and the revision that says they changed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tamma_sync.models import (
    ChangeOp,
    Definition,
    DefinitionWrite,
    EntityKind,
    SubStatus,
    content_hash,
    dump_json,
)
from tamma_sync.store.bulk import Step
from tamma_sync.store.database import Database
from tamma_sync.store.instances import delete_instances
from tamma_sync.store.rows import (
    DEFINITION_CONTENT,
    chunks,
    definition_of,
    in_byte_order,
    merge_definition,
)
from tamma_sync.store.tables import (
    catalog_revision,
    definitions,
    engines,
    instance_counts,
    instances,
    sync_state,
)
from tamma_sync.store.transaction import Transaction, WriteResult

#: Built once: moving a definition's `syncedAt` to now (`now`), and nothing else.
_REFRESH_SYNCED_AT = (
    definitions.update()
    .where(
        definitions.c.tenant_id == sa.bindparam("tenant_id", type_=sa.String),
        definitions.c.definition_id == sa.bindparam("definition_id", type_=sa.String),
    )
    .values(synced_at=sa.bindparam("now", type_=sa.BigInteger))
)
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
_counts_by_definition = (
    sa.select(instance_counts.c.definition_id, *(_count_of(key) for key in _COUNTED))
    .where(instance_counts.c.tenant_id == _TENANT)
    .group_by(instance_counts.c.definition_id)
)


async def write_definitions(
    tx: Transaction,
    tenant_id: str,
    writes: Sequence[DefinitionWrite],
    *,
    refresh_synced_at: bool = False,
) -> tuple[list[tuple[Definition, bool]], WriteResult]:
    """Create or update definitions in `tx`: each stored definition and whether it is new.

    Fields a write leaves as None keep their stored values (the original API's shallow
    merge). A write that changes nothing stores nothing, or with `refresh_synced_at`
    only moves its `syncedAt` to now: no change record, the same revision.
    """
    result = WriteResult()
    refreshed: set[str] = set()
    existing = await tx.select_by_ids(
        definitions, definitions.c.definition_id, tenant_id, [w.id for w in writes]
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
    await tx.upsert_rows(definitions, ["tenant_id", "definition_id"], list(to_write.values()))
    # Ids written whole later in the same batch have their new syncedAt already.
    refresh_only = sorted(refreshed.difference(to_write))
    if refresh_only:
        refresh = tx.dialect.driver_form(_REFRESH_SYNCED_AT)
        values = [
            refresh.step({"tenant_id": tenant_id, "definition_id": id_, "now": tx.now}).values
            for id_ in refresh_only
        ]
        await tx.run([Step(refresh.sql, values, many=True)])
        tx.refreshed_definitions = True
    return stored, result


async def delete_definitions(
    tx: Transaction,
    tenant_id: str,
    definition_ids: Sequence[str],
    source_id: str | None = None,
) -> WriteResult:
    """Tombstone live definitions (only `source_id`'s, when given) and their instances
    (counted in `deleted`)."""
    result = WriteResult()
    live = {
        key: row
        for key, row in (
            await tx.select_by_ids(
                definitions, definitions.c.definition_id, tenant_id, definition_ids
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
        result.add(await delete_instances(tx, tenant_id, orphan_ids, source_id))
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


async def get_definition(db: Database, tenant_id: str, definition_id: str) -> Definition | None:
    async with db.reading() as conn:
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


async def list_definitions(db: Database, tenant_id: str) -> list[Definition]:
    """Every live definition of a tenant, ordered by id (`in_byte_order`)."""
    async with db.reading() as conn:
        rows = (
            await conn.execute(
                sa.select(definitions).where(
                    definitions.c.tenant_id == tenant_id, definitions.c.deleted_at.is_(None)
                )
            )
        ).mappings()
        return in_byte_order((definition_of(row) for row in rows), key=lambda d: d.id)


@dataclass(frozen=True)
class _KeptDefinition:
    """A definition's wire JSON, whole and without its body, as of one version."""

    version: tuple[int, int]
    full: bytes
    compact: bytes


#: What every listed definition leaves out: a flowchart's connections, read only by the
#: definition's own page (`GET /api/workflows/definitions/{id}`), were an eighth of the
#: dashboard's list of a thousand definitions.
_NOT_LISTED = frozenset({"connections"})
#: What a compact definition also leaves out.
_DEFINITION_BODY = frozenset({"activities", "variables"}) | _NOT_LISTED


def _stale_definitions(
    versions: Sequence[Sequence[Any]], kept: Mapping[str, _KeptDefinition]
) -> list[str]:
    """The ids whose (revision, syncedAt) differs from what is kept, or that are not kept."""
    return [
        definition_id
        for definition_id, *version in versions
        if definition_id not in kept or kept[definition_id].version != tuple(version)
    ]


class DefinitionListing:
    """Definitions' wire JSON, kept per (revision, syncedAt) between listings.

    Definitions carry their activities (kilobytes each) and rarely change, so only new or
    changed ones are read and encoded again. What is kept is what the last listing saw: no
    more than the live definitions of the tenants listed.
    """

    def __init__(self) -> None:
        self._kept: dict[str, dict[str, _KeptDefinition]] = {}
        self._refresh = asyncio.Lock()

    async def read(
        self, db: Database, tenant_id: str, *, compact: bool = False
    ) -> list[tuple[str, bytes]]:
        """Every live definition of a tenant as (id, its wire JSON without `connections`),
        ordered by id (`in_byte_order`); `compact` also leaves out `activities` and
        `variables`."""
        live = (definitions.c.tenant_id == tenant_id, definitions.c.deleted_at.is_(None))
        kept = self._kept.get(tenant_id, {})
        async with db.reading() as conn:
            found = await conn.execute(
                sa.select(
                    definitions.c.definition_id, definitions.c.revision, definitions.c.synced_at
                ).where(*live)
            )
            versions = in_byte_order(found.all(), key=lambda version: version[0])
            stale = _stale_definitions(versions, kept)
            fresh: dict[str, _KeptDefinition] = {}
            if stale:
                # One refresh at a time: listings that arrive together after a change (or
                # at start-up) would otherwise each decode and encode every definition.
                async with self._refresh:
                    kept = self._kept.get(tenant_id, {})
                    stale = _stale_definitions(versions, kept)
                    for chunk in chunks(stale):
                        rows = await conn.execute(
                            sa.select(definitions).where(
                                *live, definitions.c.definition_id.in_(chunk)
                            )
                        )
                        for row in rows.mappings():
                            wire = definition_of(row).to_wire()
                            listed_wire = {k: v for k, v in wire.items() if k not in _NOT_LISTED}
                            summary = {k: v for k, v in wire.items() if k not in _DEFINITION_BODY}
                            fresh[row["definition_id"]] = _KeptDefinition(
                                (row["revision"], row["synced_at"]),
                                dump_json(listed_wire),
                                dump_json(summary),
                            )
        refreshed = set(stale)
        listed: dict[str, _KeptDefinition] = {}
        for definition_id, *_ in versions:
            entry = fresh.get(definition_id) if definition_id in refreshed else kept[definition_id]
            if entry is not None:  # else deleted between the two reads
                listed[definition_id] = entry
        self._kept[tenant_id] = listed
        return [
            (definition_id, entry.compact if compact else entry.full)
            for definition_id, entry in listed.items()
        ]


async def read_catalog_revision(db: Database) -> int:
    """Moves on with every committed write that changed a definition or moved an
    instance count: while it stays the same, so do the definitions and their counts."""
    [(revision,)] = await db.read_rows(_catalog_revision, {})
    return int(revision)


async def instance_counts_by_definition(
    db: Database, tenant_id: str
) -> dict[str, dict[str | None, int]]:
    """Live instances per definition and sub-status, `{definition_id: {sub_status or
    None: count}}`, from the kept counts: one small GROUP BY, whatever the row count.
    SQL spreads each definition's counts over one row, a column per sub-status."""
    rows = await db.read_rows(_counts_by_definition, {"tenant_id": tenant_id})
    counts: dict[str, dict[str | None, int]] = {}
    for definition_id, *row in rows:
        group = {key: count for key, count in zip(_COUNTED, row, strict=True) if count}
        if group:  # kept counts that went down to 0 stay as rows
            counts[definition_id] = group
    return counts


async def tenant_has_data(db: Database, tenant_id: str) -> bool:
    """Whether a tenant holds any definition, instance, source state or engine, deleted
    ones too: a key made for a tenant holding none reads empty lists."""
    held = [
        sa.exists().where(table.c.tenant_id == tenant_id)
        for table in (definitions, instances, sync_state, engines)
    ]
    async with db.reading() as conn:
        return bool((await conn.execute(sa.select(sa.or_(*held)))).scalar())
