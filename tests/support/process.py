"""Run `tamma-sync` as a real child process, for restart and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ready(base_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} did not become ready in {timeout}s")


@contextmanager
def running_server(
    env: Mapping[str, str],
    cwd: Path,
    *args: str,
    port: int | None = None,
    stdout: int = subprocess.DEVNULL,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`tamma-sync serve` in a child process; killed (SIGKILL) on exit if still running.
    The port is passed as `--port` unless `env` sets TAMMA_SYNC_PORT. Its stderr is a pipe;
    its stdout (where uvicorn writes the access log) goes to `stdout`."""
    port = port or int(env.get("TAMMA_SYNC_PORT", 0)) or free_port()
    port_flag = [] if "TAMMA_SYNC_PORT" in env else ["--port", str(port)]
    process = subprocess.Popen(
        [*CLI, "serve", *port_flag, *args],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url)
        yield base_url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
