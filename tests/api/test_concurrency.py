"""Many concurrent writers over HTTP: no errors ("database is locked"), no lost writes."""

from __future__ import annotations

import asyncio

import httpx

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
