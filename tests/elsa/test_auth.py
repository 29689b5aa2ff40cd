"""Authentication against the simulator with `require_auth`: API key, login, refresh, 401."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import SecretStr

from tamma_sync.elsa import ElsaAuthError, ElsaClient
from tamma_sync.settings import SourceSettings
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tests.elsa.harness import Canned, Recorder, client_for, serving

PASSWORD = "s3cret-pa55word"


def _secured(access_token_lifetime: float = 3600.0) -> ElsaSimulator:
    return ElsaSimulator(
        SimulatorConfig(
            seed=31,
            definitions=3,
            instances=20,
            require_auth=True,
            users={"admin": PASSWORD},
            access_token_lifetime=access_token_lifetime,
        )
    )


def _sequence(wire: Recorder) -> list[tuple[str, int]]:
    """(last path segment, status) of each exchange, to read the auth dance at a glance."""
    return [(e.path.rsplit("/", 1)[-1], e.status) for e in wire.log]


async def test_api_key_in_the_authorization_header() -> None:
    sim = _secured()
    with serving(sim) as (url, _):
        source = SourceSettings(id="sim", url=url, api_key=SecretStr(ADMIN_API_KEY))
        async with ElsaClient.from_settings(source) as elsa:
            assert elsa.source_id == "sim"
            page = await elsa.instances_by_creation(0, 100)
    assert sorted(row.id for row in page.items) == sorted(sim.instance_ids())


async def test_wrong_api_key_or_none_fails_at_once_and_names_no_secret() -> None:
    sim = _secured()
    with serving(sim) as (url, wire):
        async with client_for(url, api_key="wrong-key-123") as elsa:
            with pytest.raises(ElsaAuthError) as caught:
                await elsa.instances_by_creation(0, 100)
        assert caught.value.status == 401
        assert "GET /workflow-instances -> HTTP 401" in str(caught.value)
        assert "wrong-key-123" not in str(caught.value)
        assert len(wire.log) == 1  # auth failures are not retried
        async with client_for(url) as anonymous:
            with pytest.raises(ElsaAuthError):
                await anonymous.list_latest_definitions()
            assert await anonymous.package_version() == "3.7.1"  # anonymous in ELSA


async def test_login_then_refresh_before_the_token_expires() -> None:
    sim = _secured(access_token_lifetime=1.0)
    with serving(sim) as (url, wire):
        async with client_for(url, username="admin", password=PASSWORD) as elsa:
            await elsa.list_latest_definitions()
            await elsa.list_latest_definitions()
            await asyncio.sleep(0.95)  # past 90 % of the token's life
            await elsa.list_latest_definitions()
    assert _sequence(wire) == [
        ("login", 200),
        ("workflow-definitions", 200),
        ("workflow-definitions", 200),
        ("refresh-token", 200),
        ("workflow-definitions", 200),
    ]


async def test_refused_refresh_falls_back_to_a_new_login() -> None:
    sim = _secured(access_token_lifetime=1.0)
    with serving(sim) as (url, wire):
        async with client_for(url, username="admin", password=PASSWORD) as elsa:
            await elsa.list_latest_definitions()
            sim.auth.revoke_all()  # the refresh token dies too (a restart with a new key)
            await asyncio.sleep(0.95)
            await elsa.list_latest_definitions()
    assert _sequence(wire) == [
        ("login", 200),
        ("workflow-definitions", 200),
        ("refresh-token", 401),
        ("login", 200),
        ("workflow-definitions", 200),
    ]


async def test_a_401_triggers_exactly_one_fresh_login() -> None:
    sim = _secured()
    with serving(sim) as (url, wire):
        async with client_for(url, username="admin", password=PASSWORD) as elsa:
            await elsa.list_latest_definitions()
            sim.auth.revoke_all()
            await elsa.list_latest_definitions()
    assert _sequence(wire) == [
        ("login", 200),
        ("workflow-definitions", 200),
        ("workflow-definitions", 401),
        ("login", 200),
        ("workflow-definitions", 200),
    ]


async def test_a_second_401_after_the_fresh_login_is_an_auth_error() -> None:
    sim = _secured()
    with serving(sim) as (url, wire):
        wire.canned.append(Canned("GET", "/workflow-instances", 401))  # every token refused
        async with client_for(url, username="admin", password=PASSWORD) as elsa:
            with pytest.raises(ElsaAuthError, match="still unauthorized after a fresh login"):
                await elsa.instances_by_creation(0, 100)
    assert _sequence(wire) == [
        ("login", 200),
        ("workflow-instances", 401),
        ("login", 200),
        ("workflow-instances", 401),
    ]


async def test_refused_login_is_an_auth_error_without_the_password() -> None:
    sim = _secured()
    with serving(sim) as (url, _):
        async with client_for(url, username="admin", password="not-the-password") as elsa:
            with pytest.raises(ElsaAuthError, match="refused the login") as caught:
                await elsa.get_instance(sim.instance_ids()[0])
    assert "not-the-password" not in str(caught.value)


async def test_credentials_and_tokens_never_reach_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = _secured(access_token_lifetime=1.0)
    with serving(sim) as (url, _):
        sim.faults.inject("unavailable", count=2)  # login and a read get retried (and logged)
        async with client_for(url, username="admin", password=PASSWORD) as elsa:
            await elsa.list_latest_definitions()
            sim.auth.revoke_all()
            await elsa.list_latest_definitions()
        sim.faults.inject("error", count=1)
        async with client_for(url, api_key=ADMIN_API_KEY) as keyed:
            await keyed.list_latest_definitions()
    assert any(r.name == "stamina" for r in caplog.records), "retries are logged"
    for record in caplog.records:
        text = f"{record.getMessage()} {record.__dict__}"
        assert PASSWORD not in text
        assert ADMIN_API_KEY not in text
        assert "eyJ" not in text  # no JWT
        assert "Bearer " not in text and "ApiKey " not in text
