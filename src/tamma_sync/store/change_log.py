"""Reading the change log: every committed write appends to it (see `database`), and the
feed and replicas follow it by `seq`."""

from __future__ import annotations

import sqlalchemy as sa

from tamma_sync.models import Change, EntityKind
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


async def entity_history(
    db: Database, tenant_id: str, entity: EntityKind, entity_id: str, *, limit: int
) -> tuple[list[Change], bool]:
    """The newest `limit` changes of one entity, oldest first, and whether older ones are
    still in the log. Read newest first along `ix_changes_entity`, so a long history costs
    what its last page does."""
    async with db.reading() as conn:
        rows = (
            await conn.execute(
                sa.select(changes)
                .where(
                    changes.c.tenant_id == tenant_id,
                    changes.c.entity_id == entity_id,
                    changes.c.entity == entity.value,
                )
                .order_by(changes.c.seq.desc())
                .limit(limit + 1)
            )
        ).mappings()
        newest_first = [Change.model_validate(dict(row)) for row in rows]
    return newest_first[:limit][::-1], len(newest_first) > limit


async def oldest_change_at(db: Database) -> int | None:
    """When the oldest change still in the log was written (retention purges older ones)."""
    async with db.reading() as conn:
        oldest: int | None = (
            await conn.execute(sa.select(changes.c.at).order_by(changes.c.seq).limit(1))
        ).scalar()
        return oldest
