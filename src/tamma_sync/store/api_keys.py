"""API keys as stored: a row per key, holding its secret's hash only (see
`api_key_tokens`)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from tamma_sync.models import ApiKey, Scope, now_ms
from tamma_sync.store.api_key_tokens import (
    new_key_id,
    new_secret,
    parse_token,
    secret_hash,
    secret_matches,
    token_of,
)
from tamma_sync.store.database import Database
from tamma_sync.store.tables import api_keys
from tamma_sync.store.transaction import Transaction


async def create_api_key(
    tx: Transaction, tenant_id: str, scopes: Sequence[Scope], name: str | None
) -> tuple[ApiKey, str]:
    """A new key and its secret token — shown once, stored only as a hash."""
    key_id = new_key_id()
    secret = new_secret()
    row = {
        "id": key_id,
        "tenant_id": tenant_id,
        "name": name,
        "scopes": sorted({scope.value for scope in scopes}),
        "secret_hash": secret_hash(secret),
        "created_at": now_ms(),
        "revoked_at": None,
    }
    await tx.conn.execute(api_keys.insert(), row)
    return ApiKey.model_validate(row), token_of(key_id, secret)


async def list_api_keys(db: Database) -> list[ApiKey]:
    async with db.reading() as conn:
        rows = await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))
        return [ApiKey.model_validate(dict(row)) for row in rows.mappings()]


async def revoke_api_key(tx: Transaction, key_id: str) -> bool:
    """Revoke a key; False if there is no such key or it was already revoked."""
    result = await tx.conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=tx.now)
    )
    return bool(result.rowcount)


async def has_active_api_keys(db: Database) -> bool:
    async with db.reading() as conn:
        found = await conn.execute(
            sa.select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)
        )
        return found.first() is not None


async def verify_api_key(db: Database, token: str) -> ApiKey | None:
    """The active key a token belongs to, or None (unknown, malformed or revoked)."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    key_id, secret = parsed
    async with db.reading() as conn:
        row = (
            (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)))
            .mappings()
            .first()
        )
    if row is None or row["revoked_at"] is not None:
        return None
    if not secret_matches(row["secret_hash"], secret):
        return None
    return ApiKey.model_validate(dict(row))
