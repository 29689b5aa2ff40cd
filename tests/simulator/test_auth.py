"""Authentication: open mode, API keys, login, token expiry and refresh."""

from __future__ import annotations

import time

import httpx
import pytest

from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tests.support.server import serve_in_thread

LIFETIME = 0.6


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig(
        seed=2,
        instances=20,
        require_auth=True,
        api_keys=(ADMIN_API_KEY, "tamma-key"),
        users={"admin": "password", "bob": "builder"},
        access_token_lifetime=LIFETIME,
        refresh_token_lifetime=30,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_open_mode_needs_no_credentials() -> None:
    open_sim = ElsaSimulator(SimulatorConfig(seed=2, instances=5))
    with serve_in_thread(open_sim.app) as url:
        response = httpx.get(f"{url}/elsa/api/workflow-instances", timeout=5)
    assert response.status_code == 200


def test_protected_routes_answer_401_without_valid_credentials(elsa: httpx.Client) -> None:
    assert elsa.get("/package/version").json() == {"packageVersion": "3.7.1"}
    for headers in ({}, {"Authorization": "ApiKey wrong"}, bearer("not.a.jwt"), bearer("x")):
        response = elsa.get("/workflow-instances", headers=headers)
        assert response.status_code == 401
        assert response.content == b""
    assert (
        elsa.get("/workflow-definitions", headers={"Authorization": "Basic YTpi"}).status_code
        == 401
    )


@pytest.mark.parametrize("key", [ADMIN_API_KEY, "tamma-key"])
def test_api_keys(elsa: httpx.Client, key: str) -> None:
    response = elsa.get("/workflow-definitions", headers={"Authorization": f"ApiKey {key}"})
    assert response.status_code == 200


def test_login_is_200_even_when_it_fails(elsa: httpx.Client) -> None:
    failed = elsa.post("/identity/login", json={"username": "admin", "password": "nope"})
    assert (failed.status_code, failed.json()) == (200, {"isAuthenticated": False})
    ok = elsa.post("/identity/login", json={"Username": "bob", "PASSWORD": "builder"}).json()
    assert ok["isAuthenticated"] is True
    assert ok["accessToken"].startswith("eyJ") and ok["accessToken"].count(".") == 2
    assert elsa.get("/workflow-instances", headers=bearer(ok["accessToken"])).status_code == 200
    refresh_as_access = elsa.get("/workflow-instances", headers=bearer(ok["refreshToken"]))
    assert refresh_as_access.status_code == 401


def test_access_tokens_expire_and_refresh_tokens_renew_them(elsa: httpx.Client) -> None:
    tokens = elsa.post("/identity/login", json={"username": "admin", "password": "password"}).json()
    assert elsa.get("/workflow-instances", headers=bearer(tokens["accessToken"])).status_code == 200
    time.sleep(LIFETIME + 0.2)
    expired = elsa.get("/workflow-instances", headers=bearer(tokens["accessToken"]))
    assert expired.status_code == 401
    renewed = elsa.post("/identity/refresh-token", headers=bearer(tokens["refreshToken"]))
    assert renewed.status_code == 200
    fresh = renewed.json()
    assert fresh["isAuthenticated"] is True and fresh["accessToken"] != tokens["accessToken"]
    assert elsa.get("/workflow-instances", headers=bearer(fresh["accessToken"])).status_code == 200
    assert elsa.post("/identity/refresh-token").status_code == 401
    assert elsa.post("/identity/refresh-token", headers=bearer("a.b.c")).status_code == 401


def test_revoked_tokens_are_rejected(elsa: httpx.Client, control: httpx.Client) -> None:
    tokens = elsa.post("/identity/login", json={"username": "admin", "password": "password"}).json()
    assert control.post("/tokens/revoke").status_code == 200
    assert elsa.get("/workflow-instances", headers=bearer(tokens["accessToken"])).status_code == 401
    refreshed = elsa.post("/identity/refresh-token", headers=bearer(tokens["refreshToken"]))
    assert refreshed.status_code == 401
