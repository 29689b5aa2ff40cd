"""What the sync keeps per source: its saved state (cursors and the like), the batches
that move it on together with the rows they cover, and what each source holds."""

from __future__ import annotations

import sqlalchemy as sa

from tamma_sync.models import SourceState, SyncBatch
from tamma_sync.store.catalog import delete_definitions, write_definitions
from tamma_sync.store.database import Database
from tamma_sync.store.engines import put_engine
from tamma_sync.store.instances import NewRows, delete_instances, put_instances
from tamma_sync.store.rows import in_byte_order
from tamma_sync.store.tables import definitions, instance_counts, sync_state
from tamma_sync.store.transaction import Transaction, WriteResult

#: Built once: the read behind every sync status request.
_source_states = sa.select(sync_state.c.state).where(
    sync_state.c.tenant_id == sa.bindparam("tenant_id", type_=sa.String)
)


async def apply_sync_batch(
    tx: Transaction,
    tenant_id: str,
    batch: SyncBatch,
    made: NewRows | None,
    *,
    assume_new: bool = False,
) -> WriteResult:
    """Apply one sync step in `tx`: rows, deletions, and the source's new state (`made`:
    its instances' rows as `new_rows` made them ahead, if it did; `assume_new`: the
    mirror holds none of its instances, `put_instances`).

    Everything is tagged with the batch's source, and deletions only touch that
    source's rows. The state (and the source's engine entry) is saved in the same
    transaction, so a cursor never runs ahead of the rows it covers.
    """
    source_id = batch.source_id
    result = WriteResult()
    if batch.definitions:
        tagged = [d.model_copy(update={"source_id": source_id}) for d in batch.definitions]
        _, written = await write_definitions(tx, tenant_id, tagged)
        result.add(written)
    if batch.instances:
        # With its last statements (one trip on PostgreSQL) unless a deletion reads them.
        last = not batch.deleted_instance_ids and not batch.deleted_definition_ids
        _, written = await put_instances(
            tx, tenant_id, batch.instances, source_id, made=made, last=last, assume_new=assume_new
        )
        result.add(written)
    if batch.deleted_instance_ids:
        result.add(await delete_instances(tx, tenant_id, batch.deleted_instance_ids, source_id))
    if batch.deleted_definition_ids:
        result.add(await delete_definitions(tx, tenant_id, batch.deleted_definition_ids, source_id))
    if batch.state is not None:
        await _save_source_state(tx, tenant_id, batch.state)
    return result


async def _save_source_state(tx: Transaction, tenant_id: str, state: SourceState) -> None:
    state = state.model_copy(update={"updated_at": tx.now})
    await tx.upsert_rows(
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
        last=True,
    )
    await put_engine(tx, tenant_id, state.source_id, state.engine_report())


async def source_states(db: Database, tenant_id: str) -> list[SourceState]:
    """Every source's state, by source id (`in_byte_order`)."""
    rows = await db.read_mappings(_source_states, {"tenant_id": tenant_id})
    states = (SourceState.model_validate(row["state"]) for row in rows)
    return in_byte_order(states, key=lambda state: state.source_id)


async def source_state(db: Database, tenant_id: str, source_id: str) -> SourceState | None:
    async with db.reading() as conn:
        state = (
            await conn.execute(
                sa.select(sync_state.c.state).where(
                    sync_state.c.tenant_id == tenant_id, sync_state.c.source_id == source_id
                )
            )
        ).scalar()
    return SourceState.model_validate(state) if state is not None else None


async def source_counts(db: Database, tenant_id: str) -> dict[str, dict[str, int]]:
    """Live definitions and instances per source: `{source: {"definitions": n, …}}`."""
    counts: dict[str, dict[str, int]] = {}
    async with db.reading() as conn:
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
            counts.setdefault(source_id, {"definitions": 0, "instances": 0})["definitions"] = count
        instance_rows = await conn.execute(
            sa.select(instance_counts.c.source_id, sa.func.sum(instance_counts.c.count))
            .where(instance_counts.c.tenant_id == tenant_id, instance_counts.c.source_id != "")
            .group_by(instance_counts.c.source_id)
        )
        for source_id, count in instance_rows:
            if count:
                counts.setdefault(source_id, {"definitions": 0, "instances": 0})["instances"] = int(
                    count
                )
    return counts
