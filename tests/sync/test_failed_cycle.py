"""A cycle that fails on one instance's details leaves no request to ELSA behind it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from tamma_sync.elsa import ElsaClient, Timeouts
from tamma_sync.models import DEFAULT_TENANT_ID, SyncPhase
from tamma_sync.settings import SourceSettings
from tamma_sync.simulator import ElsaSimulator
from tamma_sync.store import Store
from tamma_sync.sync import StoreSink, SyncOptions, SyncService
from tests.support.server import serve_in_thread
from tests.sync.conftest import FAST_RETRY, PAGE_SIZE

DETAILS = "/workflow-instances/"
#: Detail reads in flight at most: the failing one and three others.
CONCURRENCY = 4


class SlowDetails:
    """The simulator behind an ELSA slow to load instances: the detail requests of the
    first instance asked about go on to the simulator once `others` more are held; every
    other detail request is left unanswered until its client goes away."""

    def __init__(self, app: ASGIApp, others: int) -> None:
        self._app = app
        self._others = others
        self._others_held = asyncio.Event()  # set and awaited in the server's loop only
        self._changed = threading.Condition()
        self.first: str | None = None
        self.held = 0
        """Detail requests held unanswered, so far."""
        self.open = 0
        """Of those, the ones whose client is still connected."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = str(scope.get("path", "")).partition(DETAILS)[2].split("/")[0]
        if not instance:
            await self._app(scope, receive, send)
            return
        if self.first is None:
            self.first = instance
        if instance == self.first:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._others_held.wait(), 5)
            await self._app(scope, receive, send)
            return
        with self._changed:
            self.held += 1
            self.open += 1
            self._changed.notify_all()
        if self.held == self._others:
            self._others_held.set()
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            with self._changed:
                self.open -= 1
                self._changed.notify_all()

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Whether `done()` came true within `timeout` seconds (it is checked whenever a
        request is held or its client goes away)."""
        with self._changed:
            return self._changed.wait_for(done, timeout)


@pytest.fixture
def slow_elsa(simulator: ElsaSimulator) -> SlowDetails:
    return SlowDetails(simulator.app, others=CONCURRENCY - 1)


@pytest.fixture
def elsa_url(slow_elsa: SlowDetails) -> Iterator[str]:
    with serve_in_thread(slow_elsa) as url:
        yield url


async def test_a_failed_detail_read_cancels_the_others_before_the_cycle_ends(
    source: SourceSettings,
    store: Store,
    simulator: ElsaSimulator,
    slow_elsa: SlowDetails,
    options: SyncOptions,
) -> None:
    """ELSA answers 503 for one instance's details while three more detail reads wait for
    an answer: the cycle fails with that 503, and by the time it has ended it has given up
    every read in flight (and its read-ahead of listing pages), and starts none after."""
    simulator.faults.inject("unavailable", path=DETAILS)  # only the first instance gets there
    options = dataclasses.replace(options, details_concurrency=CONCURRENCY)
    # A read timeout far beyond the test: a request the cycle left running stays open.
    timeouts = Timeouts(connect=1, read=60)
    async with ElsaClient.from_settings(
        source, page_size=PAGE_SIZE, retry=FAST_RETRY, timeouts=timeouts
    ) as client:
        service = SyncService(source, client, StoreSink(store, source.tenant_id), options)
        report = await service.run_cycle()
        left_running = asyncio.all_tasks() - {asyncio.current_task()}
        held = slow_elsa.held
        # The server hears of a client going away a moment after it went.
        closed = await asyncio.to_thread(slow_elsa.wait_until, lambda: slow_elsa.open == 0, 5)
        still_open = slow_elsa.open

    assert report.error is not None
    assert report.error.startswith(f"GET {DETAILS}{slow_elsa.first} -> HTTP 503"), report.error
    state = await store.source_state(DEFAULT_TENANT_ID, source.id)
    assert state is not None
    assert (state.phase, state.last_error) == (SyncPhase.ERROR, report.error)
    # A read waiting for a free slot may get the failed read's just before it is cancelled.
    assert held >= CONCURRENCY - 1, "the other reads were in flight when the cycle failed"
    assert not left_running, "the cycle ended with its reads (details, pages ahead) running"
    assert closed, f"{still_open} detail requests still in flight after the cycle ended"
    assert slow_elsa.held == held, "a detail request started after the cycle ended"
