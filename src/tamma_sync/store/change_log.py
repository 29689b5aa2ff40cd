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
