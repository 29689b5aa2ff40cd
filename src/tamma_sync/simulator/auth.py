"""ELSA's `Jwt-or-ApiKey` authentication: API keys, login, expiring JWTs, refresh.

Tokens are real HS256 JWTs with an `exp` claim, so a client that reads the expiry to
refresh early can be tested; lifetimes are configurable (seconds, fractions allowed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from typing import Final

import orjson

ACCESS: Final = "access"
REFRESH: Final = "refresh"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Checks `Authorization` headers and issues tokens for configured users."""

    def __init__(
        self,
        *,
        seed: int,
        users: Mapping[str, str],
        api_keys: tuple[str, ...],
        access_lifetime: float,
        refresh_lifetime: float,
    ) -> None:
        self._seed = seed
        self._users = dict(users)
        self._api_keys = frozenset(api_keys)
        self._lifetimes = {ACCESS: access_lifetime, REFRESH: refresh_lifetime}
        self._generation = 0
        self._serial = 0
        self._lock = threading.Lock()

    def _secret(self) -> bytes:
        return hashlib.sha256(f"elsa-simulator/{self._seed}/{self._generation}".encode()).digest()

    def revoke_all(self) -> None:
        """Invalidate every token issued so far (as a server restart with a new key does)."""
        with self._lock:
            self._generation += 1

    def login(self, username: str, password: str) -> dict[str, object]:
        """`POST /identity/login`: always a 200 body; tokens only for valid credentials."""
        if self._users.get(username) != password:
            return {"isAuthenticated": False}
        return self._tokens(username)

    def refresh(self, authorization: str | None) -> dict[str, object] | None:
        """`POST /identity/refresh-token` with `Bearer <refresh token>`; None means 401."""
        claims = self._claims(authorization)
        if claims is None:
            return None
        return self._tokens(str(claims["sub"]))

    def _tokens(self, username: str) -> dict[str, object]:
        return {
            "isAuthenticated": True,
            "accessToken": self._issue(username, ACCESS),
            "refreshToken": self._issue(username, REFRESH),
        }

    def _issue(self, username: str, token_type: str) -> str:
        with self._lock:
            self._serial += 1
            serial, secret = self._serial, self._secret()
        now = time.time()
        claims = {
            "sub": username,
            "name": username,
            "permissions": "*",
            "token_type": token_type,
            "jti": str(serial),
            "iat": int(now),
            "exp": round(now + self._lifetimes[token_type], 3),
            "iss": "http://elsa.api",
            "aud": "http://elsa.api",
        }
        header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
        body = _b64(orjson.dumps(claims))
        signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256)
        return f"{header}.{body}.{_b64(signature.digest())}"

    def _claims(
        self, authorization: str | None, token_type: str | None = None
    ) -> dict[str, object] | None:
        """The claims of a valid, unexpired bearer token (of `token_type` if given)."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        parts = token.strip().split(".")
        if len(parts) != 3:
            return None
        header, body, signature = parts
        expected = hmac.new(self._secret(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        try:
            valid = hmac.compare_digest(expected, _unb64(signature))
            claims = orjson.loads(_unb64(body)) if valid else None
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict):
            return None
        expiry = claims.get("exp")
        if not isinstance(expiry, int | float) or expiry <= time.time():
            return None
        if token_type is not None and claims.get("token_type") != token_type:
            return None
        return claims

    def allows(self, authorization: str | None) -> bool:
        """Whether a request to a protected endpoint is authenticated.

        Like ELSA's policy scheme: a header containing `ApiKey` goes to the API-key
        handler, anything else to JWT bearer (access tokens only).
        """
        if authorization and "ApiKey" in authorization:
            scheme, _, key = authorization.strip().partition(" ")
            return scheme == "ApiKey" and key.strip() in self._api_keys
        return self._claims(authorization, ACCESS) is not None
