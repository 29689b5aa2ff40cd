"""API key tokens, pure: making one, taking one apart, and the hash that is all the
database keeps of its secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: API keys look like `tsk_<id>_<secret>`: the id finds the row, the secret is checked.
API_KEY_PREFIX = "tsk_"


def new_key_id() -> str:
    return secrets.token_hex(6)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def token_of(key_id: str, secret: str) -> str:
    """The token a client presents, shown once."""
    return f"{API_KEY_PREFIX}{key_id}_{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """A token's (key id, secret), or None when it is not shaped like one."""
    key_id, _, secret = token.removeprefix(API_KEY_PREFIX).partition("_")
    if not token.startswith(API_KEY_PREFIX) or not key_id or not secret:
        return None
    return key_id, secret


def secret_hash(secret: str) -> str:
    """What is stored of a secret: enough to check one, never to recover it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(stored_hash: str, secret: str) -> bool:
    """Whether `secret` hashes to `stored_hash`, compared in constant time."""
    return hmac.compare_digest(stored_hash, secret_hash(secret))
