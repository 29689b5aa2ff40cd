"""Reading the change log: every committed write appends to it (see `database`), and the
feed and replicas follow it by `seq`."""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa

from tamma_sync.models import Change, ChangeOp, EntityKind, SubStatus
from tamma_sync.store.database import Database
from tamma_sync.store.tables import changes


async def changes_after(
    db: Database,
    seq: int,
    *,
    tenant_id: str | None,
    entity: EntityKind | None,
    entity_id: str | None,
    limit: int,
) -> list[Change]:
    """Change-log rows with a seq greater than `seq`, oldest first."""
    conditions: list[sa.ColumnElement[bool]] = [changes.c.seq > seq]
    if tenant_id is not None:
        conditions.append(changes.c.tenant_id == tenant_id)
    if entity is not None:
        conditions.append(changes.c.entity == entity.value)
    if entity_id is not None:
        conditions.append(changes.c.entity_id == entity_id)
    async with db.reading() as conn:
        rows = (
            await conn.execute(
                sa.select(changes).where(*conditions).order_by(changes.c.seq).limit(limit)
            )
        ).mappings()
        return [Change.model_validate(dict(row)) for row in rows]


async def last_seq(db: Database) -> int:
    """The newest change seq (0 for an empty log)."""
    async with db.reading() as conn:
        return (await conn.execute(sa.select(sa.func.max(changes.c.seq)))).scalar() or 0


async def first_seq(db: Database) -> int | None:
    """The oldest change seq still in the log (retention purges older ones)."""
    async with db.reading() as conn:
        first: int | None = (await conn.execute(sa.select(sa.func.min(changes.c.seq)))).scalar()
        return first


class ObservedChange(NamedTuple):
    """One change of an entity as its history shows it: what was done, when, and the
    entity's wire JSON right after."""

    seq: int
    op: ChangeOp
    revision: int
    at: int
    sub_status: SubStatus | None
    data: dict[str, Any]


_HISTORY_COLUMNS = (
    changes.c.seq,
    changes.c.op,
    changes.c.revision,
    changes.c.at,
    changes.c.sub_status,
    changes.c.data,
)


async def entity_history(
    db: Database, tenant_id: str, entity: EntityKind, entity_id: str, *, limit: int
) -> tuple[list[ObservedChange], bool]:
    """The newest `limit` changes of one entity, oldest first, and whether older ones are
    still in the log. Read newest first along `ix_changes_entity`, so a long history costs
    what its last page does; as plain tuples, not a model each: a history runs to
    thousands of changes, written by the store itself."""
    async with db.reading() as conn:
        rows = (
            await conn.execute(
                sa.select(*_HISTORY_COLUMNS)
                .where(
                    changes.c.tenant_id == tenant_id,
                    changes.c.entity_id == entity_id,
                    changes.c.entity == entity.value,
                )
                .order_by(changes.c.seq.desc())
                .limit(limit + 1)
            )
        ).all()
    newest_first = [
        ObservedChange(
            seq, ChangeOp(op), revision, at, None if sub is None else SubStatus(sub), data
        )
        for seq, op, revision, at, sub, data in rows[:limit]
    ]
    return newest_first[::-1], len(rows) > limit


async def oldest_change_at(db: Database) -> int | None:
    """When the oldest change still in the log was written (retention purges older ones)."""
    async with db.reading() as conn:
        oldest: int | None = (
            await conn.execute(sa.select(changes.c.at).order_by(changes.c.seq).limit(1))
        ).scalar()
        return oldest
