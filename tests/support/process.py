"""Run `tamma-sync` as a real child process, for restart and crash tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx

from tests.support.http import TLS

CLI = [sys.executable, "-m", "tamma_sync"]


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`tamma-sync ARGS` run to its end, with `env` added to this process's environment
    and the output captured as text."""
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def _ephemeral_ports() -> range:
    """The ports the kernel hands to outgoing connections (Linux's default when unknown)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def free_port() -> int:
    """A loopback port nobody listens on, for a server a test starts by port number.

    It is drawn below the ephemeral range: a port in it (what binding port 0 gives) can be
    taken by any outgoing connection between this check and the server's start, which with
    the suite's workers in parallel happened. Each xdist worker draws from a share of its
    own: two tests drawing the same port before either server bound it would otherwise
    both start, and servers with workers (SO_REUSEPORT) would share it without an error."""
    ports = range(10_000, _ephemeral_ports().start)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    share = len(ports) // workers
    while True:
        port = ports.start + int(worker) * share + random.randrange(share)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_until_ready(
    base_url: str,
    timeout: float = 30.0,
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
    log: Path | None = None,
) -> None:
    """Until `base_url` answers /readyz with 200; fails at once if `process` exits. Either
    failure shows the end of `log`, the file the server writes its output to."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=1, verify=TLS) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}{_tail(log)}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{base_url} did not become ready in {timeout}s{_tail(log)}")


def _tail(log: Path | None) -> str:
    """ ": " and the last 2,000 characters of `log`; nothing without one."""
    return "" if log is None else ": " + log.read_text(errors="replace")[-2000:]


class RunningServer(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    """The file its stderr (the application's log) goes to, readable at any time: a pipe
    nobody read while the server ran would block it once full."""


@contextmanager
def running_server(
    env: Mapping[str, str],
    cwd: Path,
    *args: str,
    port: int | None = None,
    stdout: int = subprocess.DEVNULL,
) -> Iterator[RunningServer]:
    """`tamma-sync serve` in a child process; killed (SIGKILL) on exit if still running.
    The port is passed as `--port` unless `env` sets TAMMA_SYNC_PORT. Its stderr goes to
    a log file in `cwd`; its stdout (where uvicorn writes the access log) to `stdout`."""
    port = port or int(env.get("TAMMA_SYNC_PORT", 0)) or free_port()
    port_flag = [] if "TAMMA_SYNC_PORT" in env else ["--port", str(port)]
    descriptor, name = tempfile.mkstemp(prefix=f"serve-{port}-", suffix=".log", dir=cwd)
    with os.fdopen(descriptor, "wb") as log_file:
        process = subprocess.Popen(
            [*CLI, "serve", *port_flag, *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=stdout,
            stderr=log_file,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process=process, log=Path(name))
        yield RunningServer(base_url, process, Path(name))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
