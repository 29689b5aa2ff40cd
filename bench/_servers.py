"""Child processes the benchmarks measure: `tamma-sync serve`, and the ELSA simulator."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench._common import child_env, free_port, wait_http_ok

#: What uvicorn logs once a server process has started its app.
STARTED = "Application startup complete."


@dataclass(frozen=True)
class Child:
    """A running child process serving HTTP on loopback."""

    base_url: str
    port: int
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def server_pids(self) -> list[int]:
        """This process and, under `serve --workers N`, its worker processes (spawned by
        multiprocessing; its resource tracker is left out)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        workers = [
            int(pid)
            for pid in children
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        return [self.pid, *workers]


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def _child(
    command: list[str], ready_path: str, port: int, cwd: Path, env: dict[str, str], name: str
) -> Iterator[Child]:
    log_file = cwd / f"{name}-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http_ok(base_url + ready_path, timeout=120)
        except TimeoutError:
            tail = log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} did not start; its log ends with:\n{tail}") from None
        yield Child(base_url, port, process, log_file)
    finally:
        stop_process(process)


@contextlib.contextmanager
def tamma_sync_server(
    database_url: str,
    workdir: Path,
    *,
    heartbeat_seconds: float | None = None,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    launcher: Sequence[str] = (),
) -> Iterator[Child]:
    """`tamma-sync serve` (the real CLI, default settings) on a loopback port, as a child
    process; stopped with SIGTERM (its graceful shutdown) at the end. `launcher`: a
    command that runs it (e.g. valgrind and its options)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {"TAMMA_SYNC_DATA_DIR": str(workdir / "data")}
    if heartbeat_seconds is not None:
        env["TAMMA_SYNC_SSE_HEARTBEAT_SECONDS"] = str(heartbeat_seconds)
    env.update(extra_env or {})
    command = [
        *launcher,
        sys.executable,
        "-m",
        "tamma_sync",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--database-url",
        database_url,
        "--workers",
        str(workers),
    ]
    with _child(command, "/readyz", port, workdir, child_env(env), "tamma-sync") as child:
        deadline = time.monotonic() + 120
        while child.log_file.read_text(errors="replace").count(STARTED) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"tamma-sync did not start {workers} workers")
            time.sleep(0.1)
        yield child


@contextlib.contextmanager
def scale_server(
    database_url: str, workdir: Path, *, old_routes: bool = False, name: str = "scale-server"
) -> Iterator[Child]:
    """`python -m bench._scale_server` (the app as `tamma-sync serve` serves it, plus the
    old counting routes) as a child process; SIGTERM at the end."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench._scale_server",
        "--port",
        str(port),
        "--database-url",
        database_url,
    ]
    if old_routes:
        command.append("--old-routes")
    env = child_env({"TAMMA_SYNC_DATA_DIR": str(workdir / "data")})
    with _child(command, "/readyz", port, workdir, env, name) as child:
        yield child


@contextlib.contextmanager
def elsa_simulator(
    instances: int,
    *,
    definitions: int = 12,
    seed: int = 1,
    workdir: Path | None = None,
    ending_now: bool = False,
) -> Iterator[Child]:
    """The project's ELSA 3 simulator, served by uvicorn in a process of its own (so its
    CPU does not compete with the process being measured for one GIL). `ending_now`: its
    month of history ends now, as a live ELSA's does, not at a fixed date."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench._elsa_server",
        "--port",
        str(port),
        "--instances",
        str(instances),
        "--definitions",
        str(definitions),
        "--seed",
        str(seed),
        *(["--ending-now"] if ending_now else []),
    ]
    with contextlib.ExitStack() as stack:
        cwd = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ready = "/elsa/api/package/version"
        with _child(command, ready, port, cwd, child_env(), "elsa-simulator") as child:
            yield child


@contextlib.contextmanager
def memory_server(workdir: Path, launcher: Sequence[str] = ()) -> Iterator[Child]:
    """`python -m bench._memory_server`: the compatible routes in memory, as a child process
    (run by `launcher`, if given)."""
    port = free_port()
    command = [*launcher, sys.executable, "-m", "bench._memory_server", "--port", str(port)]
    with _child(command, "/readyz", port, workdir, child_env(), "memory-server") as child:
        yield child
