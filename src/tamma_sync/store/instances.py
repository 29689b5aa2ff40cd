"""Workflow instances: whole writes, partial updates and tombstones (each moving the kept
counts and recording a change; writes also move the trends), single reads, pages, and a
source's positions for the sync to compare."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tamma_sync.models import (
    ENDED_SUB_STATUSES,
    ChangeOp,
    EntityKind,
    Instance,
    InstancePatch,
    InstancePosition,
    InstanceWrite,
    InvalidWrite,
)
from tamma_sync.store.anchors import OffsetAnchors
from tamma_sync.store.database import Database
from tamma_sync.store.pages import (
    InstancePage,
    InstanceQuery,
    PageShape,
    count_statement,
    page_of,
    page_parameters,
    page_statement,
)
from tamma_sync.store.rows import chunks, instance_of, instance_wire, merge_instance
from tamma_sync.store.tables import instances
from tamma_sync.store.transaction import Transaction, WriteResult

#: Built once: the read behind every single-instance request. By primary key alone: with
#: `deleted_at IS NULL` in the query, every partial index of live instances qualifies too,
#: and PostgreSQL without statistics (a new database's first minute, before autovacuum
#: analyzes it) took one that starts with the tenant and read all of the tenant's entries:
#: 0.3 ms at 3,000 instances instead of 0.03. Tombstones are left out after the read.
_instance_by_id = sa.select(instances).where(
    instances.c.tenant_id == sa.bindparam("tenant_id", type_=sa.String),
    instances.c.id == sa.bindparam("instance_id", type_=sa.String),
)


@dataclass(frozen=True, slots=True)
class NewRow:
    """An instance write made into the row it leads to where the mirror holds none of its
    id, and that row's change snapshot."""

    row: dict[str, Any]
    wire: dict[str, Any]


@dataclass
class NewRows:
    """A sync batch's instance writes made ahead of its write transaction (`new_rows`),
    while an earlier one waits on the database: the merge, hash and snapshot of each row
    are most of the batch's work in Python, and what a batch of new rows adds to the
    counts, trends and change log most of the rest."""

    rows: list[NewRow | None]
    """Each write's row where the mirror holds none of its id; None for a write whose row
    would depend on the time of its transaction (no `createdAt` or `updatedAt`) or that
    the store refuses (it is refused in its transaction)."""
    gathered: Transaction | None
    """What writing every row as new adds to a transaction (`Transaction.take`), when
    every write was made."""
    written: WriteResult

    def extend(self, more: NewRows) -> None:
        """Add the rows of the batch's writes that follow."""
        self.rows += more.rows
        if self.gathered is not None and more.gathered is not None:
            self.gathered.take(more.gathered)
        else:
            self.gathered = None
        self.written.add(more.written)


def new_rows(
    tx: Transaction, tenant_id: str, writes: Sequence[InstanceWrite], source_id: str | None
) -> NewRows:
    """The writes made into rows over no stored ones, gathered as new into `tx` (a
    transaction with no connection, of the time the rows are made) if all could be."""
    made: list[NewRow | None] = []
    for write in writes:
        if not (write.created_at and write.updated_at):
            made.append(None)
            continue
        try:
            row = merge_instance(tenant_id, write, None, tx.now, source_id)
        except InvalidWrite:
            made.append(None)
            continue
        row["revision"] = 1
        made.append(NewRow(row, instance_wire(row)))
    if any(row is None for row in made):
        return NewRows(made, None, WriteResult())
    _, to_write, written = _merged(tx, tenant_id, writes, {}, made, source_id)
    tx.write_last(instances, None, to_write)
    return NewRows(made, tx, written)


async def put_instances(
    tx: Transaction,
    tenant_id: str,
    writes: Sequence[InstanceWrite],
    source_id: str | None = None,
    *,
    known_rows: dict[str, dict[str, Any]] | None = None,
    made: NewRows | None = None,
    last: bool = False,
    assume_new: bool = False,
) -> tuple[list[dict[str, Any]], WriteResult]:
    """Write what changed in `tx`; returns every instance's stored row (changed or not).
    `source_id`, when given, tags every row with it (a sync batch's source). `known_rows`:
    the rows of the writes' ids as read in `tx` already, when the caller has them. `made`:
    the writes' rows as `new_rows` made them, used where the mirror holds no row of the
    id (with `assume_new` and `last`, what it gathered is taken whole). `last`: nothing
    in `tx` reads instances after: the rows are written with its last statements
    (`Transaction.upsert_rows`). `assume_new`: the mirror holds none of the
    ids (a sync's initial walk): they are not looked up, and the rows are inserted
    without a word on conflicts, so that one there after all fails the write
    (IntegrityError) instead of being overwritten as new."""
    if assume_new and last and made is not None and made.gathered is not None:
        tx.take(made.gathered)
        made.gathered = None
        return [new.row for new in made.rows if new is not None], made.written
    existing = {} if assume_new else known_rows
    if existing is None:
        ids = [w.id for w in writes]
        existing = await tx.select_by_ids(instances, instances.c.id, tenant_id, ids)
    rows, to_write, result = _merged(
        tx, tenant_id, writes, existing, made.rows if made is not None else None, source_id
    )
    key = None if assume_new else ["tenant_id", "id"]
    await tx.upsert_rows(instances, key, to_write, last=last)
    return rows, result


def _merged(
    tx: Transaction,
    tenant_id: str,
    writes: Sequence[InstanceWrite],
    existing: dict[str, dict[str, Any]],
    made: Sequence[NewRow | None] | None,
    source_id: str | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], WriteResult]:
    """The writes over the `existing` rows of their ids (updated as they are written), in
    `tx`: counted, observed and recorded. Every write's row (changed or not), the rows to
    write, and what was done."""
    result = WriteResult()
    rows: list[dict[str, Any]] = []
    to_write: dict[str, dict[str, Any]] = {}
    for write, new in zip(writes, made or itertools.repeat(None), strict=made is not None):
        old = existing.get(write.id)
        live = old if old is not None and old["deleted_at"] is None else None
        if old is None and new is not None:
            row, wire = new.row, new.wire
        else:
            row = merge_instance(tenant_id, write, live, tx.now, source_id)
            if live is not None and live["content_hash"] == row["content_hash"]:
                rows.append(live)
                result.unchanged += 1
                continue
            row["revision"] = (old["revision"] + 1) if old is not None else 1
            wire = instance_wire(row)
        if live is not None:
            tx.count(tenant_id, live, -1)
        elif old is None:
            tx.inserted["instances"] += 1
        tx.count(tenant_id, row, +1)
        tx.observe(tenant_id, live, row)
        existing[write.id] = to_write[write.id] = row
        rows.append(row)
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
            wire,
            definition_id=row["definition_id"],
            sub_status=row["sub_status"],
        )
    return rows, list(to_write.values()), result


async def put_instance(db: Database, tenant_id: str, write: InstanceWrite) -> dict[str, Any]:
    """Create one whole instance, or replace the one stored under its id; its row. On
    PostgreSQL the write is first sent, with no read before it, as one statement that
    writes only if no row of its id is stored (`_write_as_read`): the .NET service POSTs
    only what its PUT did not find. Otherwise, or if one is stored, in a write
    transaction."""
    tx = db.unlocked_transaction()
    if tx is not None:
        row = await _write_as_read(db, tx, tenant_id, write, None)
        if row is not None:
            return row
    async with db.writing(single_row=True) as locked:
        [row], _ = await put_instances(locked, tenant_id, [write], last=True)
    return row


async def update_instance(
    db: Database, tenant_id: str, instance_id: str, patch: InstancePatch
) -> Instance | None:
    """Apply a partial update to a live instance; None when there is no such instance.

    A plain read comes first: a PUT for no instance, or one that changes nothing (the .NET
    sync's every cycle), is answered from it without taking the write lock — as if it came
    just before any write that commits meanwhile. One that changes something is written
    over that row in one statement on PostgreSQL (`_write_as_read`); otherwise, or if the
    row changed in between, in a write transaction, to the row as read again under the
    lock."""
    row = await _read_live_instance(db, tenant_id, instance_id)
    if row is None:
        return None
    write = _changing_write(tenant_id, row, patch, db.clock())
    if write is None:
        return instance_of(row)
    unlocked = db.unlocked_transaction()
    if unlocked is not None:
        written = await _write_as_read(db, unlocked, tenant_id, write, row)
        if written is not None:
            return instance_of(written)
    async with db.writing(single_row=True) as tx:
        row = await _read_live_instance(tx, tenant_id, instance_id)
        if row is None:
            return None
        write = _changing_write(tenant_id, row, patch, tx.now)
        if write is None:
            return instance_of(row)
        known_rows = {instance_id: row}
        [written], _ = await put_instances(tx, tenant_id, [write], known_rows=known_rows, last=True)
    return instance_of(written)


async def _write_as_read(
    db: Database,
    tx: Transaction,
    tenant_id: str,
    write: InstanceWrite,
    stored: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Write `write` over `stored`, the row of its id as read just before (None: none),
    gathered in `tx` (`Database.unlocked_transaction`) and sent as one statement unless
    that row changed meanwhile (`Database.commit_if_unchanged`): the row written, or
    None if nothing was."""
    known_rows = {write.id: stored} if stored is not None else {}
    [row], _ = await put_instances(tx, tenant_id, [write], known_rows=known_rows, last=True)
    revision = stored["revision"] if stored is not None else None
    return row if await db.commit_if_unchanged(tx, revision) else None


def _changing_write(
    tenant_id: str, row: dict[str, Any], patch: InstancePatch, now: int
) -> InstanceWrite | None:
    """The write `patch` makes of the live instance `row`; None if it changes nothing."""
    current = instance_of(row)
    write = patch.apply_to(current)
    # A PUT that only moves updatedAt (the .NET sync's every cycle) is no change.
    probe = write.model_copy(update={"updated_at": current.updated_at})
    if merge_instance(tenant_id, probe, row, now)["content_hash"] == row["content_hash"]:
        return None
    return write


async def delete_instances(
    tx: Transaction,
    tenant_id: str,
    instance_ids: Iterable[str],
    source_id: str | None = None,
) -> WriteResult:
    """Tombstone live instances in `tx` (only `source_id`'s, when given)."""
    result = WriteResult()
    existing = await tx.select_by_ids(instances, instances.c.id, tenant_id, list(instance_ids))
    live = [
        row
        for row in existing.values()
        if row["deleted_at"] is None and source_id in (None, row["source_id"])
    ]
    for row in live:
        record_deleted(tx, tenant_id, row)
    for chunk in chunks([row["id"] for row in live]):
        await tx.conn.execute(
            instances.update()
            .where(instances.c.tenant_id == tenant_id, instances.c.id.in_(chunk))
            .values(deleted_at=tx.now, revision=instances.c.revision + 1)
        )
    result.deleted = len(live)
    return result


def record_deleted(tx: Transaction, tenant_id: str, row: Mapping[str, Any]) -> None:
    """Take the live instance `row`, deleted in `tx`, out of the counts, and record its
    deletion in the change log."""
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


async def get_instance(db: Database, tenant_id: str, instance_id: str) -> Instance | None:
    row = await _read_live_instance(db, tenant_id, instance_id)
    return instance_of(row) if row is not None else None


async def _read_live_instance(
    reader: Database | Transaction, tenant_id: str, instance_id: str
) -> dict[str, Any] | None:
    """The live instance's row, read on its own or in a write transaction."""
    parameters = {"tenant_id": tenant_id, "instance_id": instance_id}
    found = await reader.read_mappings(_instance_by_id, parameters)
    return found[0] if found and found[0]["deleted_at"] is None else None


async def list_instances(
    db: Database, tenant_id: str, query: InstanceQuery, anchors: OffsetAnchors
) -> InstancePage:
    """One page of instances in a total order on (order column, id).

    Offset pages are stable under updates when ordered by `createdAt`, which never
    changes; deep ones start from `anchors` where they can; keyset pages (`after`) cost
    the same at any depth.
    """
    shape = PageShape.of(query)
    parameters = page_parameters(tenant_id, query)
    async with db.reading_together():
        anchored = await anchors.page_rows(db, shape, parameters)
        if anchored is not None:
            rows, total = anchored
        else:
            rows = await db.read_rows(page_statement(shape), parameters, skipping=query.offset)
            total = None  # counted as bigint: an int from both drivers
            if query.with_total:
                # A page past the end has no row to carry the total.
                if rows:
                    total = rows[0][-1]
                else:
                    [(total,)] = await db.read_rows(count_statement(shape), parameters)
    wire, next_after = page_of(rows, query)
    return InstancePage(wire=wire, total=total, next_after=next_after)


async def source_instance_positions(
    db: Database,
    tenant_id: str,
    source_id: str,
    *,
    created_from: int | None,
    created_before: int | None,
    active: bool,
    after_id: str | None,
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
    async with db.reading() as conn:
        rows = await conn.execute(
            sa.select(*columns).where(*conditions).order_by(instances.c.id).limit(limit)
        )
        return [
            InstancePosition(
                id=row_id, created_at=created, updated_at=updated, sub_status=sub_status
            )
            for row_id, created, updated, sub_status in rows
        ]
