"""Retries with backoff on transient failures, bounded; never on other 4xx."""

from __future__ import annotations

import logging
import time

import pytest

from tamma_sync.elsa import (
    ElsaNotFound,
    ElsaProtocolError,
    ElsaUnavailable,
    RetryPolicy,
    Timeouts,
)
from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tests.elsa.harness import FAST_RETRY, Canned, client_for, serving
from tests.support.process import free_port
from tests.support.server import serve_in_thread


def _sim() -> ElsaSimulator:
    return ElsaSimulator(SimulatorConfig(seed=41, definitions=4, instances=30))


@pytest.mark.parametrize("kind", ["unavailable", "error", "malformed"])
async def test_transient_failures_are_retried_until_a_good_answer(kind: str) -> None:
    sim = _sim()
    with serving(sim) as (url, wire):
        sim.faults.inject(kind, count=2, path="/workflow-instances")  # type: ignore[arg-type]
        async with client_for(url) as elsa:
            page = await elsa.instances_by_creation(0, 100)
    assert sorted(row.id for row in page.items) == sorted(sim.instance_ids())
    assert len(wire.log) == 3


async def test_gives_up_with_unavailable_after_the_attempt_bound() -> None:
    sim = _sim()
    with serving(sim) as (url, wire):
        sim.faults.inject("unavailable")
        async with client_for(url) as elsa:
            with pytest.raises(ElsaUnavailable) as caught:
                await elsa.list_latest_definitions()
    assert caught.value.status == 503
    assert "GET /workflow-definitions -> HTTP 503" in str(caught.value)
    assert f"attempt {FAST_RETRY.attempts}" in str(caught.value)
    assert len(wire.log) == FAST_RETRY.attempts


async def test_gives_up_after_the_total_time_bound() -> None:
    sim = _sim()
    patient = RetryPolicy(
        attempts=1000, total_seconds=0.5, wait_initial=0.05, wait_max=0.1, wait_jitter=0.01
    )
    with serving(sim) as (url, wire):
        sim.faults.inject("error")
        async with client_for(url, retry=patient) as elsa:
            started = time.monotonic()
            with pytest.raises(ElsaUnavailable):
                await elsa.package_version()
    assert time.monotonic() - started < 2.0
    assert 2 <= len(wire.log) < 50


async def test_a_body_that_stays_malformed_is_a_protocol_error() -> None:
    sim = _sim()
    with serving(sim) as (url, _):
        sim.faults.inject("malformed", path="/workflow-instances/")
        async with client_for(url) as elsa:
            with pytest.raises(ElsaProtocolError, match="unexpected body") as caught:
                await elsa.get_instance(sim.instance_ids()[0])
    assert caught.value.status == 200


async def test_a_slow_answer_times_out_and_the_retry_succeeds() -> None:
    sim = _sim()
    with serving(sim) as (url, wire):
        sim.faults.inject("slow", count=1, delay=2.0)
        async with client_for(url, timeouts=Timeouts(connect=1.0, read=0.3)) as elsa:
            started = time.monotonic()
            assert await elsa.package_version() == "3.7.1"
            assert time.monotonic() - started < 1.5
        assert [e.status for e in wire.log] == [200]  # the slow one has not even answered yet


async def test_connection_refused_is_unavailable() -> None:
    with serve_in_thread(_sim().app) as url:
        pass  # the port is free again: nothing listens there any more
    async with client_for(url) as elsa:
        with pytest.raises(ElsaUnavailable, match="connection failed"):
            await elsa.package_version()


async def test_not_found_and_other_4xx_are_not_retried() -> None:
    sim = _sim()
    with serving(sim) as (url, wire):
        wire.canned.append(Canned("GET", "/package/version", 400))
        async with client_for(url) as elsa:
            with pytest.raises(ElsaNotFound) as missing:
                await elsa.get_instance("12345")
            with pytest.raises(ElsaNotFound):
                await elsa.get_definition("abc")
            with pytest.raises(ElsaProtocolError) as rejected:
                await elsa.package_version()
    assert missing.value.status == 404
    assert "GET /workflow-instances/12345 -> HTTP 404" in str(missing.value)
    assert rejected.value.status == 400
    assert len(wire.log) == 3


async def test_429_waits_for_retry_after() -> None:
    sim = _sim()
    with serving(sim) as (url, wire):
        wire.canned.append(Canned("GET", "/package/version", 429, {"Retry-After": "0.4"}, 1))
        async with client_for(url) as elsa:
            started = time.monotonic()
            assert await elsa.package_version() == "3.7.1"
    assert time.monotonic() - started >= 0.4
    assert [e.status for e in wire.log] == [429, 200]


async def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    sim = _sim()
    with serving(sim) as (url, wire):
        wire.canned.append(Canned("GET", "/package/version", 503, {"Retry-After": "120"}))
        async with client_for(url) as elsa:
            with pytest.raises(ElsaUnavailable) as caught:
                await elsa.package_version()
    assert caught.value.retry_after == 120.0
    assert len(wire.log) == 1


async def test_requests_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`HTTP_PROXY` is honoured and `NO_PROXY` bypasses it, as for any HTTP client: the
    client asks a port where nothing listens, and the request reaches ELSA only through
    the proxy (the simulator's server, which takes a proxy's absolute-form request)."""
    sim = _sim()
    nowhere = f"http://127.0.0.1:{free_port()}"
    with serving(sim) as (proxy, wire):
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        async with client_for(nowhere) as elsa:
            assert await elsa.package_version()
        assert len(wire.log) == 1
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "127.0.0.1")
        async with client_for(nowhere) as elsa:
            with pytest.raises(ElsaUnavailable, match="connection failed"):
                await elsa.package_version()
        assert len(wire.log) == 1


async def test_the_first_retry_waits_its_backoff_too(caplog: pytest.LogCaptureFixture) -> None:
    """The first attempt goes out before any retry machinery: a failure of it is still
    retried after the policy's first wait, and logged like every retry."""
    caplog.set_level(logging.DEBUG)
    sim = _sim()
    policy = RetryPolicy(
        attempts=3, total_seconds=5.0, wait_initial=0.3, wait_max=1.0, wait_jitter=0.0
    )
    with serving(sim) as (url, wire):
        sim.faults.inject("unavailable", count=1)
        async with client_for(url, retry=policy) as elsa:
            started = time.monotonic()
            assert await elsa.package_version()
            elapsed = time.monotonic() - started
    assert len(wire.log) == 2
    assert 0.3 <= elapsed < 1.5
    assert [r.name for r in caplog.records].count("stamina") == 1, "one retry, logged"
