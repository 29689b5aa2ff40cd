"""`tamma-sync serve --workers N`: N real server processes on one port, kept at N."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support.http import TLS
from tests.support.process import CLI, free_port, run_cli, running_server


def _workers(supervisor: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return {int(pid) for pid in children if b"spawn_main" in _command_line(int(pid))}


def _command_line(pid: int) -> bytes:
    """A process's command line; empty once it is gone (it may go while it is read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _listeners(url: str) -> int:
    """Sockets listening on the URL's port (a worker's listens once its app has started;
    the supervisor's own is bound, never listening)."""
    port = f":{int(url.rsplit(':', 1)[1]):04X} "
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            count += port in f"{fields[1]} " and fields[3] == "0A"  # 0A: LISTEN
    return count


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped before or while it was read
        return False


def test_workers_serve_one_port_and_a_killed_worker_is_replaced(
    database_url: str, tmp_path: Path
) -> None:
    env = {"TAMMA_SYNC_DATABASE_URL": database_url}
    with running_server(env, tmp_path, "--workers", "2") as (url, process, _):
        # Both serving: under load the second can still be starting when the first answers.
        _wait_for(lambda: len(_workers(process.pid)) == 2 and _listeners(url) == 2)
        first = _workers(process.pid)
        created = httpx.post(
            f"{url}/api/workflows/instances", json={"id": "i1", "definitionId": "wf"}
        )
        assert created.status_code == 201

        def total(_: int) -> int:
            # A connection of its own: any worker may take it.
            with httpx.Client(verify=TLS) as client:
                response = client.get(f"{url}/api/workflows/instances")
                assert response.status_code == 200
                return int(response.json()["total"])

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(total, range(40))) == {1}

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        # Gone, not only past listing: a dying process's command line empties before its
        # sockets close, and a connection reaching its listener then is refused.
        _wait_for(
            lambda: (
                not _alive(victim)
                and len(_workers(process.pid) - {victim}) == 2
                and _listeners(url) == 2
            )
        )
        assert first - {victim} <= _workers(process.pid), "the other worker kept serving"
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(total, range(40))) == {1}

        workers = _workers(process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not any(_alive(pid) for pid in workers)


def test_workers_spread_connections_and_do_not_share_a_port_taken(tmp_path: Path) -> None:
    """Keep-alive connections opened at once land on more than one worker; a second
    server on the same port is refused instead of silently sharing it."""
    with running_server({}, tmp_path, "--workers", "2") as (url, process, _):
        port = int(url.rsplit(":", 1)[1])
        _wait_for(
            lambda: (
                len([pid for pid in _workers(process.pid) if _sockets_on(pid, port, LISTEN)]) == 2
            )
        )
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        try:
            for connection in connections:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            for connection in connections:
                assert connection.recv(1024).startswith(b"HTTP/1.1 200")
            serving = {pid for pid in _workers(process.pid) if _sockets_on(pid, port, ESTABLISHED)}
            assert len(serving) == 2
        finally:
            for connection in connections:
                connection.close()

        second = run_cli("serve", "--workers", "2", "--port", str(port), cwd=tmp_path)
        assert second.returncode == 3
        assert "Address already in use" in second.stderr


def test_a_second_server_is_refused_while_the_first_ones_workers_start(tmp_path: Path) -> None:
    """Until a worker listens, nothing shows that the port is taken: here the first server's
    workers wait on a database that accepts connections and never answers. A second server
    started meanwhile must still be refused, not share the port."""
    port = free_port()
    with socket.create_server(("127.0.0.1", 0)) as silent_database:
        database_url = f"postgresql://postgres@127.0.0.1:{silent_database.getsockname()[1]}/x"
        command = ["serve", "--workers", "2", "--port", str(port), "--database-url", database_url]
        first = subprocess.Popen([*CLI, *command], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        assert first.stderr is not None
        try:
            deadline = time.monotonic() + 30
            while "serving on" not in first.stderr.readline():  # its workers are starting
                assert time.monotonic() < deadline and first.poll() is None
            second = run_cli(
                "serve", "--workers", "2", "--port", str(port), cwd=tmp_path, timeout=30
            )
            assert second.returncode == 3, second.stderr
            assert f"another `tamma-sync serve --workers` holds port {port}" in second.stderr
            assert first.poll() is None, "the first server was still starting"
        finally:
            silent_database.close()  # its connection reset: the first server stops too
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=30)


#: TCP states as /proc/net/tcp writes them.
ESTABLISHED, LISTEN = "01", "0A"


def _sockets_on(pid: int, port: int, state: str) -> int:
    """TCP sockets on local `port`, in `state`, that process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed since the directory was listed
            continue
        if target.startswith("socket:["):
            inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    found = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state and fields[9] in inodes:
                found += 1
    return found


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    result = run_cli(
        "serve",
        "--workers",
        "2",
        "--port",
        str(free_port()),
        "--database-url",
        f"postgresql://postgres@127.0.0.1:{free_port()}/nothing-listens-here",
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 3
    assert "could not start; stopping" in result.stderr


def test_workers_must_be_at_least_one(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "--workers" in result.stderr


def test_serve_takes_its_port_and_workers_from_the_environment(tmp_path: Path) -> None:
    """Containers configure by environment: TAMMA_SYNC_PORT and TAMMA_SYNC_WORKERS do what
    --port and --workers do, and a bad value is the same usage error."""
    env = {"TAMMA_SYNC_PORT": str(free_port()), "TAMMA_SYNC_WORKERS": "2"}
    with running_server(env, tmp_path) as (url, process, _):
        assert url.endswith(f":{env['TAMMA_SYNC_PORT']}")
        _wait_for(lambda: len(_workers(process.pid)) == 2)
        assert httpx.get(f"{url}/healthz").status_code == 200
    result = run_cli("serve", cwd=tmp_path, env={"TAMMA_SYNC_WORKERS": "0"})
    assert result.returncode == 2
    assert "TAMMA_SYNC_WORKERS" in result.stderr


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed supervisor leaves no worker serving the port: the server can be started
    again on it at once."""
    with running_server({}, tmp_path, "--workers", "2") as (url, process, _):
        _wait_for(lambda: len(_workers(process.pid)) == 2)
        workers = _workers(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        _wait_for(lambda: not any(_alive(pid) for pid in workers))
    port = int(url.rsplit(":", 1)[1])
    with running_server({}, tmp_path, "--workers", "2", port=port) as (again, _, _):
        assert httpx.get(f"{again}/healthz").status_code == 200
