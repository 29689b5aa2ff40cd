"""Retention: deleting, in bounded batches so writers are never held up for long, what is
old enough to go."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from tamma_sync.models import ENDED_SUB_STATUSES
from tamma_sync.store.database import Database
from tamma_sync.store.instances import record_deleted
from tamma_sync.store.tables import (
    changes,
    definitions,
    engine_events,
    instance_trends,
    instances,
)
from tamma_sync.store.trends import KEPT_MINUTES, MINUTE_MS


@dataclass(frozen=True)
class PurgeCutoffs:
    """Epoch-ms cutoffs: rows older than these are purged (`ended_instances`: off if None).
    `trends_now`: trend rollups older than their span is kept (`trends.KEPT_MINUTES`) as of
    then are purged (off if None)."""

    tombstones: int
    changes: int
    engine_events: int
    ended_instances: int | None = None
    trends_now: int | None = None


async def purge(db: Database, cutoffs: PurgeCutoffs, *, batch: int) -> dict[str, int]:
    """Delete what retention says is old enough: tombstones, change-log rows, engine
    events, and (only if their cutoffs are set) trend rollups and ended instances. Returns
    how many rows of each kind went."""
    targets: list[tuple[str, sa.Table, sa.ColumnElement[bool]]] = [
        ("tombstoned definitions", definitions, definitions.c.deleted_at < cutoffs.tombstones),
        ("tombstoned instances", instances, instances.c.deleted_at < cutoffs.tombstones),
        ("changes", changes, changes.c.at < cutoffs.changes),
        ("engine events", engine_events, engine_events.c.timestamp < cutoffs.engine_events),
    ]
    if cutoffs.trends_now is not None:
        now_minute = cutoffs.trends_now // MINUTE_MS
        targets += [
            (
                f"trend rollups of {span} min",
                instance_trends,
                sa.and_(
                    instance_trends.c.span_minutes == span,
                    instance_trends.c.minute < now_minute - kept,
                ),
            )
            for span, kept in KEPT_MINUTES.items()
        ]
    purged: dict[str, int] = {}
    for name, table, condition in targets:
        purged[name] = 0
        key = sa.tuple_(*table.primary_key.columns)
        while True:
            async with db.writing() as tx:
                chosen = sa.select(*table.primary_key.columns).where(condition).limit(batch)
                result = await tx.conn.execute(table.delete().where(key.in_(chosen)))
            purged[name] += result.rowcount
            if result.rowcount < batch:
                break
    purged["ended instances"] = (
        0
        if cutoffs.ended_instances is None
        else await _purge_ended_instances(db, cutoffs.ended_instances, batch)
    )
    return purged


async def _purge_ended_instances(db: Database, finished_before: int, batch: int) -> int:
    """Delete live ended instances batch by batch, keeping the counts in step and
    recording each as deleted: streams and change-log readers learn that it left."""
    ended = [status.value for status in ENDED_SUB_STATUSES]
    purged = 0
    while True:
        async with db.writing() as tx:
            rows = (
                (
                    await tx.conn.execute(
                        sa.select(instances)
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
                record_deleted(tx, row["tenant_id"], dict(row))
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
