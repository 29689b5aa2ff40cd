"""`tamma-sync serve`, in one process or in several on one port.

A worker is a whole replica — its own connection pool, change-feed listener, sync runner
candidate and retention loop — so running N workers is running N replicas on one port:
whatever holds for replicas (one syncer at a time, SSE on any replica, migrations under a
lock) holds for workers. The supervisor only reserves the port, starts the workers, starts
a new one when one dies, and stops them all on SIGINT/SIGTERM.

Each worker listens on a socket of its own with SO_REUSEPORT, so that the kernel spreads
new connections over the workers. One shared listening socket would not: the first worker
to wake accepts every connection pending, and keep-alive clients that connect at once (a
dashboard's, a load balancer's pool) all land on that one worker.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from tamma_sync.api.app import create_app
from tamma_sync.api.server import GRACEFUL_SHUTDOWN_SECONDS, Server
from tamma_sync.api.timeouts import request_deadlines
from tamma_sync.exit_codes import STARTUP_FAILED
from tamma_sync.logs import configure_logging
from tamma_sync.runtime import tune_runtime
from tamma_sync.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """What a server process needs to build its app; picklable, for spawned workers."""

    settings: Settings
    host: str
    port: int
    insecure: bool = False


def run_server(options: ServeOptions, sockets: list[socket.socket] | None = None) -> bool:
    """Run one server until it is asked to stop; False if it never started."""
    tune_runtime()
    server = Server(
        create_app(options.settings, host=options.host, insecure=options.insecure),
        host=options.host,
        port=options.port,
        own_logging=options.settings.log_format == "json",
        access_log=options.settings.access_log,
    )
    # Read when the server starts: slow clients get a deadline (api/timeouts.py).
    server.config.http = request_deadlines(options.settings.request_timeout_seconds)
    server.run(sockets)
    return server.started


def run_workers(options: ServeOptions, workers: int) -> int:
    """Serve with `workers` processes on one port; returns the exit code."""
    # Bound, never listening: fails early if the port is taken, fixes a port 0, and
    # keeps the port while workers come and go.
    try:
        options = dataclasses.replace(options, port=_free_port(options.host, options.port))
        lock = _port_lock(options.port)
        reservation = _reuse_port_socket(options.host, options.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", options.host, options.port, exc)
        return STARTUP_FAILED
    stopping = threading.Event()

    def stop(sig: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping %d workers", signal.Signals(sig).name, workers)
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    context = multiprocessing.get_context("spawn")

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(options,), name="tamma-worker")
        process.start()
        return process

    processes = [start() for _ in range(workers)]
    log.info(
        "serving on %s:%d with %d workers: %s",
        options.host,
        options.port,
        workers,
        ", ".join(str(p.pid) for p in processes),
    )
    exit_code = 0
    while not stopping.is_set():
        wait([process.sentinel for process in processes], timeout=0.5)
        for index, process in enumerate(processes):
            if process.exitcode is None or stopping.is_set():
                continue
            if process.exitcode == STARTUP_FAILED:
                log.error("worker %s could not start; stopping", process.pid)
                exit_code = STARTUP_FAILED
                stopping.set()
                continue
            log.warning("worker %s exited (%s); starting another", process.pid, process.exitcode)
            processes[index] = start()
    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in processes:
        process.join(GRACEFUL_SHUTDOWN_SECONDS + 5)
        if process.is_alive():
            log.error("worker %s did not stop in time; killing it", process.pid)
            process.kill()
            process.join()
    reservation.close()
    if lock is not None:
        lock.close()
    return exit_code


def _free_port(host: str, port: int) -> int:
    """`port` (or, for 0, one the kernel picks) if no socket listens on it: SO_REUSEPORT
    alone would let a second server share the port instead of failing."""
    with socket.socket(_family(host)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        free: int = probe.getsockname()[1]
        return free


def _port_lock(port: int) -> socket.socket | None:
    """This machine's lock on `port` for `serve --workers` (Linux: an abstract Unix socket
    named after it, freed by the kernel however the process ends). Until a worker listens
    nothing shows that the port is taken, and with SO_REUSEPORT a second supervisor started
    meanwhile would share it with the first instead of failing."""
    if not sys.platform.startswith("linux"):
        return None
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0tamma-sync-serve-port-{port}")
    except OSError as exc:
        lock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise OSError(
            errno.EADDRINUSE,
            f"Address already in use: another `tamma-sync serve --workers` holds port {port}",
        ) from None
    return lock


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT, not listening yet."""
    sock = socket.socket(_family(host))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _worker(options: ServeOptions) -> None:
    # Its own process group: a Ctrl-C in the terminal reaches the supervisor only, which
    # then asks each worker once (a second signal would make uvicorn skip the grace period).
    os.setpgrp()
    configure_logging(options.settings.log_format)
    _stop_with_supervisor()
    try:
        # Bound only: uvicorn listens once the app has started, and until then the kernel
        # sends new connections to the workers that are serving.
        listener = _reuse_port_socket(options.host, options.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", options.host, options.port, exc)
        sys.exit(STARTUP_FAILED)
    if not run_server(options, [listener]):
        sys.exit(STARTUP_FAILED)


def _stop_with_supervisor() -> None:
    """Stop (gracefully) when the supervisor is gone, even killed with SIGKILL: orphaned
    workers would go on serving the port, and a restarted server could not take it."""
    supervisor = multiprocessing.parent_process()
    if supervisor is None:
        return

    def watch() -> None:
        wait([supervisor.sentinel])
        log.error("the supervisor is gone; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
