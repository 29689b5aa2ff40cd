"""Workflow engines (the ELSA servers and other workers that report in) and their events:
registration and heartbeats, and the newest events of each, trimmed as they arrive."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from tamma_sync.models import (
    DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
    Engine,
    EngineEvent,
    EngineEventWrite,
    EngineReport,
)
from tamma_sync.store.database import Database
from tamma_sync.store.rows import chunks, in_byte_order
from tamma_sync.store.tables import engine_events, engines
from tamma_sync.store.transaction import Transaction

# The reads behind the engines pages, built once.
_TENANT = sa.bindparam("tenant_id", type_=sa.String)
_ENGINE = sa.bindparam("engine_id", type_=sa.String)
_engines_of_tenant = sa.select(engines).where(engines.c.tenant_id == _TENANT)
_engine_of_tenant = _engines_of_tenant.where(engines.c.id == _ENGINE)
_recent_events = (
    sa.select(engine_events)
    .where(engine_events.c.tenant_id == _TENANT)
    .order_by(engine_events.c.timestamp.desc(), engine_events.c.seq.desc())
    .limit(sa.bindparam("limit", type_=sa.Integer))
    .offset(sa.bindparam("offset", type_=sa.BigInteger))
)
_recent_events_of_engine = _recent_events.where(engine_events.c.engine_id == _ENGINE)
_events_total = sa.select(sa.func.count()).where(engine_events.c.tenant_id == _TENANT)
_events_total_of_engine = _events_total.where(engine_events.c.engine_id == _ENGINE)


async def put_engine(
    tx: Transaction, tenant_id: str, engine_id: str, report: EngineReport
) -> tuple[Engine, bool]:
    """Register an engine or record its heartbeat in `tx`; fields not sent keep their
    value. Returns the engine and whether it is newly registered."""
    found = await tx.read_mappings(
        _engine_of_tenant, {"tenant_id": tenant_id, "engine_id": engine_id}
    )
    old = found[0] if found else None
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
    # Nothing in a transaction reads an engine after writing it: the row goes last.
    await tx.upsert_rows(engines, ["tenant_id", "id"], [row], last=True)
    engine = Engine.model_validate(row)
    engine.online = engine.is_online(tx.now)
    return engine, old is None


async def get_engine(db: Database, tenant_id: str, engine_id: str) -> Engine | None:
    found = await _engines(db, _engine_of_tenant, {"tenant_id": tenant_id, "engine_id": engine_id})
    return found[0] if found else None


async def list_engines(db: Database, tenant_id: str) -> list[Engine]:
    """Every engine of a tenant, by id (`in_byte_order`), `online` derived from its last
    heartbeat."""
    found = await _engines(db, _engines_of_tenant, {"tenant_id": tenant_id})
    return in_byte_order(found, key=lambda engine: engine.id)


async def _engines(
    db: Database, statement: sa.Select[Any], parameters: Mapping[str, Any]
) -> list[Engine]:
    now = db.clock()
    found = [Engine.model_validate(row) for row in await db.read_mappings(statement, parameters)]
    for engine in found:
        engine.online = engine.is_online(now)
    return found


async def delete_engine(tx: Transaction, tenant_id: str, engine_id: str) -> bool:
    """Forget an engine and its events; False when there is no such engine."""
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
    tx: Transaction,
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
            tx.dialect.insert(engine_events)
            .on_conflict_do_nothing(index_elements=["tenant_id", "engine_id", "id"])
            .returning(engine_events.c.seq)
        )
        added.update((await tx.conn.execute(statement, chunk)).scalars())
    mine = sa.and_(engine_events.c.tenant_id == tenant_id, engine_events.c.engine_id == engine_id)
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
    db: Database, tenant_id: str, engine_id: str | None, *, limit: int, offset: int
) -> list[EngineEvent]:
    """Events newest first, of one engine or of all."""
    statement = _recent_events if engine_id is None else _recent_events_of_engine
    parameters = {
        "tenant_id": tenant_id,
        "engine_id": engine_id,
        "limit": limit,
        "offset": offset,
    }
    return [
        EngineEvent.model_validate(row) for row in await db.read_mappings(statement, parameters)
    ]


async def engine_events_page(
    db: Database, tenant_id: str, engine_id: str | None, *, limit: int, offset: int
) -> tuple[list[EngineEvent], int]:
    """Events newest first (of one engine, or of all), and how many there are: both read
    on one connection."""
    statement = _events_total if engine_id is None else _events_total_of_engine
    async with db.reading_together():
        events = await recent_engine_events(db, tenant_id, engine_id, limit=limit, offset=offset)
        [(total,)] = await db.read_rows(statement, {"tenant_id": tenant_id, "engine_id": engine_id})
    return events, total
