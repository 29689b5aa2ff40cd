"""Incomplete or inconsistent definition listings are reported, so no definition gets
deleted on their word."""

from __future__ import annotations

from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tests.elsa.harness import client_for, serving


async def test_short_definition_page_is_reported_too() -> None:
    sim = ElsaSimulator(SimulatorConfig(seed=22, definitions=12, instances=0))
    with serving(sim) as (url, _):
        sim.faults.inject("short_page", count=1, path="/workflow-definitions", drop=1)
        async with client_for(url, page_size=5) as elsa:
            listing = await elsa.list_latest_definitions()
    assert not listing.complete
    assert len(listing.items) == 4


async def test_a_new_definition_version_mid_listing_shows_as_a_repeat() -> None:
    """A new version (here: a draft over a published latest) is a new row at the end of
    the creation order, so its definition is listed twice."""
    sim = ElsaSimulator(SimulatorConfig(seed=24, definitions=12, instances=0))
    first = next(iter(sim.snapshot().definitions.values()))
    added = False

    def add_version_between_pages(method: str, path: str, query: str) -> None:
        nonlocal added
        if path.endswith("/workflow-definitions") and "page=1&" in query and not added:
            added = True
            assert not sim.save_draft(first.definition_id).in_place

    with serving(sim) as (url, wire):
        wire.on_request = add_version_between_pages
        async with client_for(url, page_size=5) as elsa:
            listing = await elsa.list_latest_definitions()
            assert added
            assert not listing.complete, "a definition listed twice must not pass as complete"
            assert (await elsa.list_latest_definitions()).complete
