"""CPU cost of N idle SSE subscribers (default 1,000) on one `tamma-sync serve` process,
against the old design's cost for as many subscribers: each polling the store once a second.

New: a real `tamma-sync serve` child process (default settings: 15 s heartbeat), N
per-instance streams (`GET /api/workflows/instances/{id}/events`, one instance each)
opened from this process (so the client's CPU is not the server's), nothing written while
measuring. The server's CPU time comes from /proc/<pid>/stat (all its threads, aiosqlite's
included) over the window; on PostgreSQL the CPU of the backends serving its connections
is read the same way and shown apart.

Baseline, same run, same database: the original stream's per-subscriber timer
— N asyncio tasks in a child process, each reading one
instance from the store every second (random phase) and comparing `updatedAt` — once
through tamma-sync's `Store.get_instance` (what this server would do), and once through
the bare driver (one prepared `SELECT`; the cheapest a poller can be).

`python -m bench.idle_subscribers --help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    NONE,
    TIMES,
    BackendMeter,
    CpuMeter,
    MachineLoad,
    Report,
    Table,
    child_env,
    code_checkpoint,
    common_arguments,
    fmt,
    fresh_database,
    machine_description,
    postgres_admin_url,
    raise_fd_limit,
    retrying_async,
    wait_for_quiet,
)
from bench._servers import Child, tamma_sync_server
from bench._sse import SseStream
from tamma_sync.models import DEFAULT_TENANT_ID
from tamma_sync.settings import normalize_database_url
from tamma_sync.store import Store

MODULE = "bench.idle_subscribers"
TARGET_CORE_FRACTION = 0.02
INSTANCES_PATH = "/api/workflows/instances"
RESULT_PREFIX = "RESULT "
READY_LINE = "READY"
#: Connections opened at once while subscribing.
CONNECT_CONCURRENCY = 50
#: Seconds after the last subscription before the window opens (start-up transients).
SETTLE_SECONDS = 5.0


def _instance_ids(count: int) -> list[str]:
    return [f"idle-{n:05d}" for n in range(count)]


# -- the new design: N idle streams on one server --------------------------------------------


async def _create_instances(base_url: str, ids: list[str]) -> None:
    slots = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:

        async def create(instance_id: str) -> None:
            async with slots:
                response = await http.post(
                    INSTANCES_PATH,
                    json={"id": instance_id, "definitionId": "bench-idle", "status": "Suspended"},
                )
                response.raise_for_status()

        await asyncio.gather(*(create(instance_id) for instance_id in ids))


class IdleClient:
    """Holds N streams open and counts what arrives on them."""

    def __init__(self) -> None:
        self.streams: list[SseStream] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.heartbeats = 0
        self.events = 0
        self.closed = 0
        self.first_frame: list[asyncio.Event] = []

    async def _consume(self, stream: SseStream, started: asyncio.Event) -> None:
        try:
            async for frame in stream.frames():
                if frame.comment is not None:
                    self.heartbeats += 1
                else:
                    self.events += 1
                    started.set()
        finally:
            self.closed += 1

    async def open(self, base_url: str, ids: list[str]) -> float:
        slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
        began = time.perf_counter()

        async def one(instance_id: str) -> None:
            async with slots:
                stream = await SseStream.open(base_url, f"{INSTANCES_PATH}/{instance_id}/events")
                started = asyncio.Event()
                self.streams.append(stream)
                self.first_frame.append(started)
                self.tasks.append(asyncio.create_task(self._consume(stream, started)))
                await asyncio.wait_for(started.wait(), 60)

        await asyncio.gather(*(one(instance_id) for instance_id in ids))
        return time.perf_counter() - began

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(stream.close() for stream in self.streams))


async def measure_server(
    server: Child,
    database_url: str,
    admin_url: str | None,
    subscribers: int,
    duration: float,
    floor_duration: float,
) -> dict[str, Any]:
    ids = _instance_ids(subscribers)
    await _create_instances(server.base_url, ids)
    await asyncio.sleep(SETTLE_SECONDS)
    result: dict[str, Any] = {"subscribers": subscribers}
    if floor_duration > 0:
        backends = await asyncio.to_thread(BackendMeter(admin_url, database_url).start)
        meter = CpuMeter([server.pid]).start()
        await asyncio.sleep(floor_duration)
        meter.stop()
        result["floor"] = {
            "seconds": meter.elapsed,
            "server_cpu_s": meter.seconds,
            "postgres_cpu_s": await asyncio.to_thread(backends.stop),
            "postgres_sessions": backends.sessions,
            "postgres_backends": backends.backends_seen,
        }
    client = IdleClient()
    result["connect_seconds"] = await client.open(server.base_url, ids)
    await asyncio.sleep(SETTLE_SECONDS)
    heartbeats_before, events_before = client.heartbeats, client.events
    backends = await asyncio.to_thread(BackendMeter(admin_url, database_url).start)
    meter = CpuMeter([server.pid]).start()
    load = MachineLoad.start()
    client_cpu = time.process_time()
    await asyncio.sleep(duration)
    meter.stop()
    result["window"] = {
        "seconds": meter.elapsed,
        "server_cpu_s": meter.seconds,
        "postgres_cpu_s": await asyncio.to_thread(backends.stop),
        "postgres_sessions": backends.sessions,
        "postgres_backends": backends.backends_seen,
        "client_cpu_s": time.process_time() - client_cpu,
        "machine_busy_cores": load.busy_cores(),
        "heartbeats": client.heartbeats - heartbeats_before,
        "events": client.events - events_before,
        "open_streams": len(client.streams) - client.closed,
    }
    await client.close()
    return result


# -- the old design: N pollers in a child process --------------------------------------------


async def _poll_with_store(database_url: str, ids: list[str], duration: float) -> dict[str, Any]:
    store = Store.from_url(normalize_database_url(database_url))

    async def read(instance_id: str) -> int | None:
        instance = await store.get_instance(DEFAULT_TENANT_ID, instance_id)
        return instance.updated_at if instance is not None else None

    try:
        return await _poll_loop(read, ids, duration)
    finally:
        await store.close()


async def _poll_raw(database_url: str, ids: list[str], duration: float) -> dict[str, Any]:
    query = (
        "SELECT id, definition_id, status, sub_status, current_activity, variables, "
        "created_at, updated_at, finished_at FROM instances "
        "WHERE tenant_id = {0} AND id = {1} AND deleted_at IS NULL"
    )
    if database_url.startswith("sqlite"):
        import aiosqlite

        path = database_url.split(":///", 1)[1]
        async with aiosqlite.connect(path) as db:
            statement = query.format("?", "?")

            async def read_sqlite(instance_id: str) -> int | None:
                async with db.execute(statement, (DEFAULT_TENANT_ID, instance_id)) as cursor:
                    row = await cursor.fetchone()
                return int(row[7]) if row is not None else None

            return await _poll_loop(read_sqlite, ids, duration)
    import asyncpg

    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    try:
        statement = query.format("$1", "$2")

        async def read_postgres(instance_id: str) -> int | None:
            row = await pool.fetchrow(statement, DEFAULT_TENANT_ID, instance_id)
            return int(row["updated_at"]) if row is not None else None

        return await _poll_loop(read_postgres, ids, duration)
    finally:
        await pool.close()


async def _poll_loop(read: Any, ids: list[str], duration: float) -> dict[str, Any]:
    """N timers, one per subscriber: read the instance every second, compare updatedAt."""
    polls = 0
    changes = 0
    counting = False
    stop = asyncio.Event()

    async def subscriber(instance_id: str) -> None:
        nonlocal polls, changes
        last: int | None = None
        next_tick = time.perf_counter() + random.uniform(0, 1.0)
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
            next_tick += 1.0
            updated = await read(instance_id)
            if counting:
                polls += 1
                if last is not None and updated is not None and updated > last:
                    changes += 1
            last = updated

    tasks = [asyncio.create_task(subscriber(instance_id)) for instance_id in ids]
    await asyncio.sleep(SETTLE_SECONDS)
    print(READY_LINE, flush=True)
    counting = True
    cpu_before, started = time.process_time(), time.perf_counter()
    await asyncio.sleep(duration)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    counting = False
    stop.set()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    result = {"seconds": elapsed, "poller_cpu_s": cpu, "polls": polls, "changes_seen": changes}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    # Stay connected until the parent has read the database backends' CPU.
    await asyncio.to_thread(sys.stdin.readline)
    return result


def _poller(args: argparse.Namespace) -> None:
    import uvloop

    ids = _instance_ids(args.subscribers)
    if args.mode == "store":
        uvloop.run(_poll_with_store(args.database_url, ids, args.duration))
    else:
        uvloop.run(_poll_raw(args.database_url, ids, args.duration))


async def measure_pollers(
    database_url: str, admin_url: str | None, subscribers: int, duration: float, mode: str
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        MODULE,
        "--poller",
        "--mode",
        mode,
        "--database-url",
        database_url,
        "--subscribers",
        str(subscribers),
        "--duration",
        str(duration),
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdin is not None
    backends = BackendMeter(admin_url, database_url)
    meter = CpuMeter([process.pid])
    load: MachineLoad | None = None
    result: dict[str, Any] | None = None
    try:
        while line := (await process.stdout.readline()).decode():
            if line.strip() == READY_LINE:
                await asyncio.to_thread(backends.start)
                meter.start()
                load = MachineLoad.start()
            elif line.startswith(RESULT_PREFIX):
                meter.stop()
                result = json.loads(line[len(RESULT_PREFIX) :])
                result["process_cpu_s"] = meter.seconds
                result["postgres_cpu_s"] = await asyncio.to_thread(backends.stop)
                result["postgres_sessions"] = backends.sessions
                result["postgres_backends"] = backends.backends_seen
                result["machine_busy_cores"] = load.busy_cores() if load else 0.0
                process.stdin.write(b"done\n")
                await process.stdin.drain()
                break
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
    if result is None:
        stderr = (await process.stderr.read()).decode() if process.stderr else ""
        raise RuntimeError(f"poller ({mode}) failed:\n{stderr[-3000:]}")
    return result


# -- orchestration ---------------------------------------------------------------------------


async def run_database(
    kind: str, args: argparse.Namespace, admin_url: str, workdir: Path
) -> dict[str, Any]:
    pg_admin = admin_url if kind == "postgresql" else None
    result: dict[str, Any] = {"database": kind}
    code_checkpoint(f"{kind} server")
    with fresh_database(kind, admin_url, workdir, "idle") as url:
        print(f"[{kind}] server with {args.subscribers} idle subscribers ...", file=sys.stderr)
        with tamma_sync_server(url, workdir) as server:
            result["server"] = await measure_server(
                server, url, pg_admin, args.subscribers, args.duration, args.floor_duration
            )
        window = result["server"]["window"]
        print(
            f"  server CPU {window['server_cpu_s']:.2f}s over {window['seconds']:.0f}s "
            f"({window['server_cpu_s'] / window['seconds'] * 100:.2f} % of a core), "
            f"{window['heartbeats']} heartbeats, {window['open_streams']} streams open",
            file=sys.stderr,
        )
        for mode in args.baselines:
            code_checkpoint(f"{kind} baseline {mode}")
            print(f"[{kind}] baseline: {args.subscribers} pollers ({mode}) ...", file=sys.stderr)
            duration = args.duration if mode == "store" else args.raw_duration
            polled = await measure_pollers(url, pg_admin, args.subscribers, duration, mode)
            result[f"poll_{mode}"] = polled
            print(
                f"  poller CPU {polled['process_cpu_s']:.2f}s over {polled['seconds']:.0f}s, "
                f"{polled['polls']} polls",
                file=sys.stderr,
            )
    return result


def _sessions_note(kind: str, figures: dict[str, Any]) -> str:
    if kind != "postgresql":
        return ""
    return f", {figures.get('postgres_backends', 0):,} PostgreSQL backends seen"


def _pct(cpu: float, seconds: float) -> float:
    return cpu / seconds * 100 if seconds else 0.0


def _write_report(report: Report, args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    report.add(
        f"Setup: per database a fresh one with {args.subscribers:,} instances; `tamma-sync "
        f"serve` (default settings, 15 s heartbeat) in a child process; {args.subscribers:,} "
        "per-instance SSE streams (one instance each) opened from the benchmark process, "
        f"then {SETTLE_SECONDS:g} s to settle and a {args.duration:g} s window with no writes. "
        "CPU = utime+stime from /proc/<pid>/stat (every thread of the process), over the "
        f"window. `floor`: the same server with no subscriber ({args.floor_duration:g} s, "
        "measured first). Baselines in a child process of their own, after the server "
        f"stopped: {args.subscribers:,} asyncio tasks (uvloop), each reading its instance "
        "every second with a random phase and comparing `updatedAt` — `store`: "
        "`Store.get_instance` (SQLAlchemy Core), `raw`: one prepared SELECT through the bare "
        f"driver (aiosqlite / asyncpg pool of 10), {args.raw_duration:g} s window. "
        "PostgreSQL CPU: backends connected to the benchmark database, shown apart."
    )
    rows = []
    targets = []
    for result in results:
        kind = result["database"]
        server = result["server"]
        window = server["window"]
        server_pct = _pct(window["server_cpu_s"], window["seconds"])
        pg_pct = _pct(window["postgres_cpu_s"], window["seconds"])
        floor = server.get("floor")
        if floor:
            rows.append(
                [
                    kind,
                    "new: server, no subscriber (floor)",
                    f"{floor['seconds']:.0f} s",
                    f"{fmt(_pct(floor['server_cpu_s'], floor['seconds']), 2)} %",
                    f"{fmt(_pct(floor['postgres_cpu_s'], floor['seconds']), 2)} %"
                    if kind == "postgresql"
                    else NONE,
                    NONE,
                    NONE,
                ]
            )
        rows.append(
            [
                kind,
                f"new: server, {args.subscribers:,} idle SSE subscribers",
                f"{window['seconds']:.0f} s",
                f"**{fmt(server_pct, 2)} %**",
                f"{fmt(pg_pct, 2)} %" if kind == "postgresql" else NONE,
                f"{window['heartbeats']:,} heartbeats, {window['open_streams']:,} streams open "
                f"at the end, client {fmt(_pct(window['client_cpu_s'], window['seconds']), 1)} %"
                + _sessions_note(kind, window),
                fmt(window["machine_busy_cores"], 2),
            ]
        )
        baselines = {}
        for mode in args.baselines:
            polled = result[f"poll_{mode}"]
            pct = _pct(polled["process_cpu_s"], polled["seconds"])
            baselines[mode] = pct + _pct(polled["postgres_cpu_s"], polled["seconds"])
            rows.append(
                [
                    kind,
                    f"old: {args.subscribers:,} pollers, 1/s each ({mode})",
                    f"{polled['seconds']:.0f} s",
                    f"**{fmt(pct, 1)} %**",
                    f"{fmt(_pct(polled['postgres_cpu_s'], polled['seconds']), 1)} %"
                    if kind == "postgresql"
                    else NONE,
                    f"{polled['polls']:,} polls ({polled['polls'] / polled['seconds']:,.0f}/s)"
                    + _sessions_note(kind, polled),
                    fmt(polled["machine_busy_cores"], 2),
                ]
            )
        total_new = server_pct + pg_pct
        verdict = "met" if server_pct <= TARGET_CORE_FRACTION * 100 else "**missed**"
        target_row = [
            kind,
            f"{fmt(server_pct, 2)} % ({fmt(total_new, 2)} % with PostgreSQL)"
            if kind == "postgresql"
            else f"{fmt(server_pct, 2)} %",
            verdict,
        ]
        for mode in args.baselines:
            target_row.append(
                f"{baselines[mode] / total_new:,.0f}{TIMES}" if total_new else "n/a (0 CPU)"
            )
        targets.append(target_row)
    report.add(
        Table(
            "CPU, as % of one core",
            [
                "database",
                "what",
                "window",
                "process CPU",
                "PostgreSQL CPU",
                "notes",
                "machine busy cores",
            ],
            rows,
        )
    )
    report.add(
        Table(
            f"Target: ≤ 2 % of one core for {args.subscribers:,} idle subscribers",
            [
                "database",
                "server CPU",
                "target",
                *(f"old ({mode}) / new, incl. PostgreSQL" for mode in args.baselines),
            ],
            targets,
        )
    )


async def _main_async(
    args: argparse.Namespace, admin_url: str, databases: list[str]
) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="tamma-bench-") as tmp:
        for kind in databases:
            results.append(
                await retrying_async(
                    kind,
                    functools.partial(run_database, kind, args, admin_url, Path(tmp)),
                    admin_url if kind == "postgresql" else None,
                )
            )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.idle_subscribers",
        description="Server CPU for N idle SSE subscribers vs N once-a-second store pollers.",
    )
    parser.add_argument("--subscribers", type=int, default=1_000, help="(1000)")
    parser.add_argument("--duration", type=float, default=60.0, help="window in s (60)")
    parser.add_argument(
        "--floor-duration",
        type=float,
        default=20.0,
        help="window for the server without subscribers, 0 to skip (20)",
    )
    parser.add_argument(
        "--raw-duration", type=float, default=30.0, help="window of the raw-driver baseline (30)"
    )
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="comma-separated (sqlite,postgresql)"
    )
    parser.add_argument(
        "--baseline", default="store,raw", help="pollers to run: store, raw (store,raw)"
    )
    common_arguments(parser)
    parser.add_argument("--poller", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="store", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.poller:
        _poller(args)
        return
    args.baselines = [mode.strip() for mode in args.baseline.split(",") if mode.strip()]
    databases = [kind.strip() for kind in args.databases.split(",") if kind.strip()]
    limit = raise_fd_limit(args.subscribers * 2 + 256)
    admin_url = postgres_admin_url(args.postgres_url)
    report = Report(
        f"Idle subscribers: {args.subscribers:,} SSE streams on one server",
        MODULE,
        machine_description(admin_url if "postgresql" in databases else None),
    )
    busy = wait_for_quiet(args.quiet_wait)
    import uvloop

    results = uvloop.run(_main_async(args, admin_url, databases))
    report.raw = {"args": vars(args), "busy_before": busy, "fd_limit": limit, "results": results}
    _write_report(report, args, results)
    report.publish(record=args.record)


if __name__ == "__main__":
    main()
