"""Running the app under uvicorn so that a shutdown also ends the live streams.

uvicorn waits for open responses before it stops, and an SSE stream never finishes on its
own; so on SIGINT/SIGTERM the streams are ended first, each with a `retry:` hint, and
clients reconnect — to another replica, or to this one once it is back.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI

from tamma_sync.feed import ChangeFeed


class Server(uvicorn.Server):
    """A uvicorn server that ends the app's SSE streams when it is asked to exit."""

    def __init__(self, app: FastAPI, *, host: str, port: int, log_level: str = "info") -> None:
        super().__init__(uvicorn.Config(app, host=host, port=port, log_level=log_level))
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        feed: ChangeFeed | None = getattr(self._app.state, "feed", None)
        if feed is not None:
            feed.end_streams()
        super().handle_exit(sig, frame)
