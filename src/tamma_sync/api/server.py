"""Running the app under uvicorn so that a shutdown also ends the live streams.

uvicorn waits for open responses before it stops, and an SSE stream never finishes on its
own; so on SIGINT/SIGTERM the streams are ended first, each with a `retry:` hint, and
clients reconnect — to another replica, or to this one once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.lifespan.on import LifespanOn, LifespanSendMessage

from tamma_sync.api.access_log import uvicorn_log_config
from tamma_sync.api.app import StartupRefused
from tamma_sync.feed import ChangeFeed

#: Seconds uvicorn waits for open requests after SIGTERM before it cancels them.
GRACEFUL_SHUTDOWN_SECONDS = 10


class Server(uvicorn.Server):
    """A uvicorn server that ends the app's SSE streams when it is asked to exit.

    `log_config=None` leaves uvicorn's loggers to the process's logging setup (JSON logs)."""

    def __init__(
        self,
        app: FastAPI,
        *,
        host: str,
        port: int,
        log_level: str = "info",
        own_logging: bool = False,
        access_log: bool = True,
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            log_config=None if own_logging else uvicorn_log_config(),
            # The original API sent no `server` header; a client parses every one it gets.
            server_header=False,
        )
        super().__init__(config)
        self._app = app
        self._woken: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.lifespan = _Lifespan(self.config)
        await super().startup(sockets)
        # What exists once the app has started (modules, schemas, compiled statements)
        # lives as long as the process: freezing it keeps the collector's full passes,
        # which stall every request in flight, to what requests allocate.
        gc.freeze()

    async def main_loop(self) -> None:
        """uvicorn's loop of ticks, but an exit request wakes it at once instead of at the
        next tick, 0.1 s later: a stop takes that much less."""
        woken = asyncio.Event()
        self._woken = (asyncio.get_running_loop(), woken)
        counter = 0
        try:
            while not await self.on_tick(counter):
                counter = (counter + 1) % 864_000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), 0.1)
        finally:
            self._woken = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM:
            # A requested stop that went well exits 0. uvicorn's own handler records the
            # signal and raises it again once shut down, and the process would end "killed
            # by SIGTERM"; for SIGTERM it does nothing else than set the public
            # `should_exit`, so that is all done here. (SIGINT keeps uvicorn's handling: a
            # second one forces the exit, and the process ends as interrupted.)
            self.should_exit = True
        else:
            super().handle_exit(sig, frame)
        woken = self._woken
        if woken is None:  # not serving (yet or any more): no stream to end, no loop to wake
            self._end_streams()
            return
        # From a signal handler or another thread alike: the streams are ended, and the loop
        # woken, on the loop's own thread (their events are not thread-safe).
        loop, event = woken
        loop.call_soon_threadsafe(self._end_streams)
        loop.call_soon_threadsafe(event.set)

    def _end_streams(self) -> None:
        feed: ChangeFeed | None = getattr(self._app.state, "feed", None)
        if feed is not None:
            feed.end_streams()


class _Lifespan(LifespanOn):
    """uvicorn's lifespan protocol, but a start-up refused for a known reason (a database
    that cannot be reached, an open server on a network) is logged as that reason's line,
    not as a traceback."""

    async def send(self, message: LifespanSendMessage) -> None:
        refused = sys.exception()  # Starlette reports the failure from its `except` block
        if message["type"] == "lifespan.startup.failed" and isinstance(refused, StartupRefused):
            message = {"type": "lifespan.startup.failed", "message": str(refused)}
        await super().send(message)
