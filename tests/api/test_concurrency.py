"""Many concurrent writers over HTTP: no errors ("database is locked"), no lost writes."""

from __future__ import annotations

import asyncio

import httpx
import sqlalchemy as sa

from tamma_sync.store import Store
from tamma_sync.store.connect import WRITE_OPTION
from tamma_sync.store.database import WRITE_LOCK_KEY

WRITERS = 60


async def test_concurrent_posts_and_puts_lose_nothing(server_url: str) -> None:
    # A connection idle for uvicorn's keep-alive timeout (5 s) is closed by the server: the
    # client drops its own sooner, or one reused just as the server closes it fails. (On a
    # loaded machine the 60 serialized creations can take that long.)
    limits = httpx.Limits(max_connections=WRITERS, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=server_url, timeout=30, limits=limits) as http:
        created = await asyncio.gather(
            *(
                http.post("/api/workflows/instances", json={"id": f"i{n}", "definitionId": "wf"})
                for n in range(WRITERS)
            )
        )
        assert [r.status_code for r in created] == [201] * WRITERS

        # Each writer updates its own instance and, at the same time, one shared instance.
        own = [
            http.put(f"/api/workflows/instances/i{n}", json={"variables": {"writer": n}})
            for n in range(WRITERS)
        ]
        shared = [
            http.put("/api/workflows/instances/i0", json={"currentActivity": f"step-{n}"})
            for n in range(WRITERS)
        ]
        responses = await asyncio.gather(*own, *shared)
        assert {r.status_code for r in responses} == {200}, [
            r.text for r in responses if r.status_code != 200
        ]

        for n in range(1, WRITERS):
            body = (await http.get(f"/api/workflows/instances/i{n}")).json()
            assert body["variables"] == {"writer": n}
        shared_body = (await http.get("/api/workflows/instances/i0")).json()
        # Created, its writer's own PUT, then WRITERS distinct currentActivity PUTs: each
        # stored as a revision of its own, none lost to a read-modify-write race.
        assert shared_body["revision"] == 1 + 1 + WRITERS
        listed = (await http.get("/api/workflows/instances", params={"pageSize": 200})).json()
        assert listed["total"] == WRITERS


async def test_puts_that_change_nothing_are_not_held_up_by_a_write(
    server_url: str, store: Store
) -> None:
    """The .NET sync PUTs every instance each cycle, most of them changing nothing, and PUTs
    each new one before POSTing it (404): those answers come from a plain read, so they are
    not queued behind a long write (a sync batch, another process's write), while a PUT that
    changes something waits for it and is then applied."""
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as http:
        body = {"id": "i1", "definitionId": "wf", "status": "Running", "updatedAt": 1_000}
        assert (await http.post("/api/workflows/instances", json=body)).status_code == 201
        async with store.sql_engine.connect() as plain:
            writer = await plain.execution_options(
                **{WRITE_OPTION: True},
                **({} if store.is_sqlite else {"isolation_level": "READ COMMITTED"}),
            )
            await writer.begin()  # BEGIN IMMEDIATE on SQLite: the write lock
            if not store.is_sqlite:
                await writer.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY}
                )
            same = await http.put("/api/workflows/instances/i1", json={**body, "updatedAt": 2_000})
            assert same.status_code == 200 and same.json()["updatedAt"] == 1_000
            missing = await http.put("/api/workflows/instances/i2", json=body)
            assert missing.status_code == 404
            changing = asyncio.ensure_future(
                http.put("/api/workflows/instances/i1", json={**body, "status": "Finished"})
            )
            done, _ = await asyncio.wait([changing], timeout=1.0)
            assert not done, "a PUT that changes something waits for the write lock"
            await writer.rollback()
        changed = await changing
        assert changed.status_code == 200 and changed.json()["subStatus"] == "Finished"
