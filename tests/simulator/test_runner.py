"""serve_simulator: serves over HTTP, mutates on a timer, stops cleanly when cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
import pytest

from tamma_sync.simulator import ElsaSimulator, SimulatorConfig, serve_simulator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_serves_and_mutates_until_cancelled() -> None:
    simulator = ElsaSimulator(SimulatorConfig(seed=3, instances=30, wall_clock=True))
    port = free_port()
    url = f"http://127.0.0.1:{port}/elsa/api/workflow-instances"
    task = asyncio.create_task(serve_simulator(simulator, "127.0.0.1", port, 0.05, 2))
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(200):
            with contextlib.suppress(httpx.ConnectError):
                first = (await client.get(url)).json()
                break
            await asyncio.sleep(0.025)
        # The mutator ticks every 0.05 s: read until a tick shows (400 reads at most).
        for _ in range(400):
            later = (await client.get(url)).json()
            if later != first:
                break
            await asyncio.sleep(0.025)
        assert later != first, "instances moved on between the two reads"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(httpx.ConnectError):
            await client.get(url)
