"""Bearer tokens from `/identity/login`: when to renew them.

The client never verifies a token (the server does); it only reads the JWT `exp` claim so
it can renew a little before expiry instead of eating a 401 on every hour boundary.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

import orjson

#: Renew this long before expiry at most; short-lived tokens renew at 90% of their life.
RENEW_MARGIN_SECONDS: Final = 30.0


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, unverified; None if absent or not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


@dataclass(frozen=True, slots=True)
class Token:
    """A token and the wall-clock time (epoch seconds) after which it should be renewed."""

    value: str
    renew_at: float | None

    @classmethod
    def issued(cls, value: str, now: float) -> Token:
        expiry = jwt_expiry(value)
        if expiry is None:
            return cls(value, None)
        margin = min(RENEW_MARGIN_SECONDS, max(expiry - now, 0.0) * 0.1)
        return cls(value, expiry - margin)

    def is_fresh(self, now: float) -> bool:
        """Usable now; a token without a readable expiry is used until the server says 401."""
        return self.renew_at is None or now < self.renew_at
