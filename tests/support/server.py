"""Run an ASGI app on a real loopback socket for the duration of a test."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from tamma_sync.api.server import Server

START_TIMEOUT_SECONDS = 15.0


@contextmanager
def serve_in_thread(app: Any, *, port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 in a background thread; yield its base URL.

    The thread has its own event loop, so sync and async tests alike can talk to the
    server over real HTTP. Port 0 picks a free port. Stopping it is a SIGTERM-like exit:
    tamma-sync apps end their SSE streams first.
    """
    if isinstance(app, FastAPI):
        server: uvicorn.Server = Server(app, host="127.0.0.1", port=port, log_level="warning")
    else:
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound_port}"
    finally:
        server.handle_exit(signal.SIGTERM, None)
        thread.join(timeout=START_TIMEOUT_SECONDS)
