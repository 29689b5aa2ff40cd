"""Token renewal timing and Retry-After parsing: pure functions, no server."""

from __future__ import annotations

import base64
import email.utils

import orjson
import pytest

from tamma_sync.elsa.auth import RENEW_MARGIN_SECONDS, Token, jwt_expiry
from tamma_sync.elsa.transport import parse_retry_after


def _jwt(claims: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_jwt_expiry_reads_exp_without_verifying() -> None:
    assert jwt_expiry(_jwt({"sub": "admin", "exp": 1_900_000_000})) == 1_900_000_000.0
    assert jwt_expiry(_jwt({"sub": "admin"})) is None
    assert jwt_expiry(_jwt({"exp": True})) is None
    assert jwt_expiry(_jwt(["exp"])) is None
    assert jwt_expiry("opaque-token") is None
    assert jwt_expiry("a.!!!.c") is None


def test_tokens_renew_before_expiry() -> None:
    now = 1_000.0
    long_lived = Token.issued(_jwt({"exp": now + 3600}), now)
    assert long_lived.renew_at == now + 3600 - RENEW_MARGIN_SECONDS
    short_lived = Token.issued(_jwt({"exp": now + 10}), now)
    assert short_lived.renew_at == pytest.approx(now + 9)
    assert short_lived.is_fresh(now + 8.9)
    assert not short_lived.is_fresh(now + 9)
    assert Token.issued("opaque", now).is_fresh(now + 10**9)  # renewed on 401 only


def test_retry_after_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(" 0.5 ", now) == 0.5
    assert parse_retry_after("-4", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(email.utils.formatdate(now + 7, usegmt=True), now) == 7.0
    assert parse_retry_after(email.utils.formatdate(now - 7, usegmt=True), now) == 0.0
