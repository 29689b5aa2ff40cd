"""Serve a simulator with uvicorn, optionally moving its instances on a timer (the demo)."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from tamma_sync.simulator.simulator import ElsaSimulator


async def serve_simulator(
    simulator: ElsaSimulator,
    host: str,
    port: int,
    mutate_interval: float | None,
    steps_per_tick: int,
) -> None:
    """Serve until uvicorn stops (Ctrl-C) or this coroutine is cancelled (then uvicorn
    shuts down gracefully). Every `mutate_interval` seconds apply `steps_per_tick` random
    steps, in a worker thread so a big step never stalls requests."""
    config = uvicorn.Config(simulator.app, host=host, port=port, access_log=False)
    server = uvicorn.Server(config)
    mutator = None
    if mutate_interval is not None:
        mutator = asyncio.create_task(_mutate(simulator, mutate_interval, steps_per_tick))
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
    finally:
        if mutator is not None:
            mutator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mutator


async def _mutate(simulator: ElsaSimulator, interval: float, steps: int) -> None:
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(simulator.step, steps)
