"""Memory at scale: peak RSS of the sync worker during a 1,000,000-instance initial mirror,
and of the server serving reads on that mirror.

Usage (from the repository root; ≈ 10 min with the defaults on 2 cores):

    .venv/bin/python -m bench.scale_memory
    .venv/bin/python -m bench.scale_memory --databases postgresql --instances 200000
    .venv/bin/python -m bench.scale_memory --instances 1000000 --record

The project's ELSA simulator (`SimulatorConfig(instances=N, definitions=1000)`, seed 1)
runs in a process of its own (`bench/_elsa_server.py`). Per database (a fresh SQLite file
under /tmp and a fresh `tamma_bench_<random>` PostgreSQL database, dropped afterwards):

1. the sync worker exactly as an operator runs it: `tamma-sync sync --once` (the CLI, one
   cycle: definitions and the instance walk; an initial walk needs no reconciliation) with
   `TAMMA_SYNC_ELSA_URL`, `TAMMA_SYNC_SYNC_DETAILS=none` (no per-instance detail requests,
   to keep the run bounded) and otherwise default settings (pages of 1,000). Its peak RSS
   is the kernel's own figure for the child (`ru_maxrss` from `wait4`), its RSS is also
   sampled every 0.25 s to show the curve. Baseline, same run: the same worker mirroring a
   simulator with `--baseline-instances` (10,000) instances into another fresh database of
   the same kind — a bounded worker peaks at about the same RSS whatever the count;
2. then a `tamma-sync serve` child process on the mirror just written, its RSS after start
   (the baseline) and its peak RSS (VmHWM, reset before each window) while serving the read
   loads of `bench.scale_reads`: the instance list and the dashboard summary at concurrency
   64, `/api/dashboard/workflows` and deep keyset pages at concurrency 16.

Target: every peak ≤ 300 MB. The report is printed; `--record` appends it to
bench/results/scale_memory.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bench._common import (
    NONE,
    TIMES,
    BackendMeter,
    CpuMeter,
    MachineLoad,
    Report,
    Table,
    child_env,
    common_arguments,
    fmt,
    machine_description,
    memory_kib,
    postgres_admin_url,
    temp_postgres_database,
    wait_for_quiet,
)
from bench._scale_common import (
    MEASUREMENT_HEADER,
    ForeignCpu,
    Measurement,
    Scenario,
    measurement_row,
    mib,
    run_scenario,
)
from bench._servers import elsa_simulator, tamma_sync_server
from tamma_sync.api.pagination import encode_cursor
from tamma_sync.settings import normalize_database_url

MODULE = "bench.scale_memory"
TARGET_MIB = 300.0
ELSA_API_KEY = "00000000-0000-0000-0000-000000000000"
LIST = "/api/workflows/instances"


@dataclass
class SyncRun:
    label: str
    instances: int
    wall_s: float
    exit_code: int
    peak_rss_kib: int
    rss_curve_kib: list[int]
    worker_cpu_s: float
    simulator_cpu_s: float
    postgres_cpu_s: float
    busy_cpu_s: float
    foreign_cpu_s: float
    live_instances: int
    summary_line: str

    @property
    def rate(self) -> float:
        return self.instances / self.wall_s if self.wall_s else 0.0


def _sample_rss(pid: int, samples: list[tuple[float, int]], stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(OSError, KeyError):
            samples.append((time.monotonic() - started, memory_kib(pid)["VmRSS"]))
        stop.wait(0.25)


def _curve(samples: list[tuple[float, int]], points: int = 11) -> list[int]:
    """RSS at 0 %, 10 %, ... 100 % of the run (the sample nearest each moment)."""
    if not samples:
        return []
    end = samples[-1][0]
    curve = []
    for step in range(points):
        moment = end * step / (points - 1)
        curve.append(min(samples, key=lambda sample: abs(sample[0] - moment))[1])
    return curve


async def _live_instances(database_url: str) -> int:
    sql_engine = create_async_engine(normalize_database_url(database_url))
    try:
        async with sql_engine.connect() as conn:
            count = await conn.execute(
                sa.text("SELECT count(*) FROM instances WHERE deleted_at IS NULL")
            )
            return int(count.scalar_one())
    finally:
        await sql_engine.dispose()


def sync_once(
    label: str,
    database_url: str,
    elsa_url: str,
    instances: int,
    workdir: Path,
    admin_url: str | None,
    simulator_pid: int,
    timeout: float,
) -> SyncRun:
    """`tamma-sync sync --once` in a child process; its exact peak RSS from wait4."""
    env = child_env(
        {
            "TAMMA_SYNC_DATA_DIR": str(workdir / "data"),
            "TAMMA_SYNC_ELSA_URL": elsa_url,
            "TAMMA_SYNC_ELSA_API_KEY": ELSA_API_KEY,
            "TAMMA_SYNC_SYNC_DETAILS": "none",
        }
    )
    log_file = workdir / f"sync-{label}.log"
    backends = BackendMeter(admin_url, database_url).start() if admin_url else None
    simulator = CpuMeter([simulator_pid]).start()
    machine = MachineLoad.start()
    foreign = ForeignCpu().start()
    started = time.perf_counter()
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tamma_sync", "sync", "--once", "--database-url", database_url],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(process.pid, samples, stop), daemon=True)
    sampler.start()
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    try:
        # wait4 rather than Popen.wait: the kernel's peak RSS of exactly this child.
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        killer.cancel()
        stop.set()
        sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    simulator.stop()
    busy = machine.busy_cpu_seconds()
    foreign.stop()
    postgres_cpu = backends.stop() if backends is not None else 0.0
    text = log_file.read_text(errors="replace")
    summary = [line for line in text.splitlines() if re.match(r"^elsa: \d+ created", line)]
    if process.returncode != 0 or not summary:
        raise RuntimeError(f"sync --once ({label}) failed ({process.returncode}):\n{text[-3000:]}")
    return SyncRun(
        label=label,
        instances=instances,
        wall_s=wall,
        exit_code=process.returncode,
        peak_rss_kib=int(usage.ru_maxrss),
        rss_curve_kib=_curve(samples),
        worker_cpu_s=usage.ru_utime + usage.ru_stime,
        simulator_cpu_s=simulator.seconds,
        postgres_cpu_s=postgres_cpu,
        busy_cpu_s=busy,
        foreign_cpu_s=foreign.seconds,
        live_instances=asyncio.run(_live_instances(database_url)),
        summary_line=summary[-1],
    )


def _deep_cursor_paths(base_url: str, total: int) -> list[str]:
    """Keyset pages 50 % to 95 % down the default order, cursors read through the API."""
    paths = []
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for step in range(10):
            row = int(total * (0.5 + 0.05 * step)) // 50 * 50
            response = client.get(LIST, params={"pageSize": 50, "page": max(1, row // 50)})
            response.raise_for_status()
            cursor = response.json().get("nextCursor")
            if cursor:
                paths.append(f"{LIST}?pageSize=50&cursor={cursor}")
    return paths or [f"{LIST}?pageSize=50&cursor={encode_cursor('createdAt', False, (0, ''))}"]


@dataclass
class ServerRun:
    idle_rss_kib: int
    measurements: list[Measurement] = field(default_factory=list)


def serve_loads(
    database_url: str,
    workdir: Path,
    args: argparse.Namespace,
    admin_url: str | None,
    total: int,
) -> ServerRun:
    with tamma_sync_server(database_url, workdir) as server:
        deep = _deep_cursor_paths(server.base_url, total)
        time.sleep(1.0)
        run = ServerRun(idle_rss_kib=memory_kib(server.pid).get("VmRSS", 0))
        d, w = args.duration, args.warmup
        scenarios = [
            Scenario("tp_list", f"`{LIST}?pageSize=50`", [f"{LIST}?pageSize=50"], 64, d, w),
            Scenario(
                "tp_summary", "`/api/dashboard/summary`", ["/api/dashboard/summary"], 64, d, w
            ),
            Scenario(
                "workflows",
                "`/api/dashboard/workflows`",
                ["/api/dashboard/workflows"],
                16,
                d,
                w,
                min_requests=16,
            ),
            Scenario("deep_keyset", f"deep keyset pages (rows 50 %{NONE}95 %)", deep, 16, d, w),
        ]
        pg = admin_url is not None
        for scenario in scenarios:
            print(f"  serving {scenario.key}", file=sys.stderr)
            run.measurements.append(
                run_scenario(
                    scenario,
                    [server.pid],
                    server.port,
                    admin_url=admin_url if pg else None,
                    database_url=database_url if pg else None,
                )
            )
    return run


def verdict(peak_kib: float) -> str:
    return "met" if peak_kib / 1024 <= TARGET_MIB else "**missed**"


def build_report(
    args: argparse.Namespace,
    machine: dict[str, str],
    quiet: float,
    syncs: dict[str, tuple[SyncRun, SyncRun]],
    servers: dict[str, ServerRun],
) -> Report:
    report = Report(
        f"Scale memory: initial mirror of {args.instances:,} instances, then reads",
        MODULE,
        machine,
    )
    report.add(
        f"""
Setup: the ELSA simulator (seed 1, {args.definitions:,} definitions, {args.instances:,}
instances; baseline {args.baseline_instances:,} instances) served by uvicorn in a process of
its own. Sync: `tamma-sync sync --once --database-url URL` as a child process with
`TAMMA_SYNC_ELSA_URL`, `TAMMA_SYNC_SYNC_DETAILS=none`, otherwise default settings (one
cycle: definitions and the instance walk in pages of 1,000);
peak RSS = `ru_maxrss` of the child from `wait4` (the kernel's exact peak), curve = VmRSS
sampled every 0.25 s. Server: `tamma-sync serve` (one uvicorn process, default settings) on
the mirror just written, loads from a client process of its own ({args.warmup:g} s warm-up,
{args.duration:g} s measured); peak = VmHWM, reset at the start of each window. Client,
server, simulator and PostgreSQL share the machine's cores; `other users' CPU` is what
processes that are neither this benchmark's nor PostgreSQL's used meanwhile (a shared
machine; near 0 = undisturbed; peak RSS does not depend on it). Machine busy before start:
{quiet:.2f} cores.
"""
    )
    rows = []
    for name, (baseline, full) in syncs.items():
        for run in (baseline, full):
            rows.append(
                [
                    name,
                    f"{run.instances:,}",
                    f"{run.wall_s:,.1f} s",
                    f"{fmt(run.rate, 0)}/s",
                    f"**{mib(run.peak_rss_kib)}**",
                    ", ".join(f"{kib / 1024:,.0f}" for kib in run.rss_curve_kib),
                    f"{run.worker_cpu_s:,.1f} s",
                    f"{run.simulator_cpu_s:,.1f} s",
                    f"{run.postgres_cpu_s:,.1f} s" if run.postgres_cpu_s else NONE,
                    f"{run.foreign_cpu_s:,.1f} s",
                    f"{run.live_instances:,}",
                ]
            )
    report.add(
        Table(
            "Sync worker (`tamma-sync sync --once`, details `none`)",
            [
                "database",
                "instances",
                "wall time",
                "instances/s",
                "peak RSS",
                "RSS over the run, MiB (every 10 % of the time)",
                "worker CPU",
                "simulator CPU",
                "PostgreSQL CPU",
                "other users' CPU",
                "live instances after",
            ],
            rows,
        )
    )
    report.add(
        "Summary lines printed by the CLI: "
        + "; ".join(f"{name}: `{full.summary_line}`" for name, (_, full) in syncs.items())
    )
    for name, server in servers.items():
        report.add(
            Table(
                f"Server on the mirror, {name} (RSS after start: {mib(server.idle_rss_kib)})",
                MEASUREMENT_HEADER,
                [measurement_row(m) for m in server.measurements],
            )
        )
    target_rows = []
    for name, (baseline, full) in syncs.items():
        target_rows.append(
            [
                name,
                f"sync worker peak RSS, {full.instances:,} instances ≤ {TARGET_MIB:.0f} MB",
                mib(full.peak_rss_kib),
                f"{full.peak_rss_kib / 1024 / TARGET_MIB:,.2f}{TIMES} the target; "
                f"{full.peak_rss_kib / baseline.peak_rss_kib:,.2f}{TIMES} the "
                f"{baseline.instances:,}-instance peak ({mib(baseline.peak_rss_kib)}) for "
                f"{full.instances / baseline.instances:,.0f}{TIMES} the instances",
                verdict(full.peak_rss_kib),
            ]
        )
    for name, server in servers.items():
        for m in server.measurements:
            target_rows.append(
                [
                    name,
                    f"server peak RSS ≤ {TARGET_MIB:.0f} MB: {m.label}, "
                    f"concurrency {m.concurrency}",
                    mib(m.peak_rss_kib),
                    f"{m.peak_rss_kib / 1024 / TARGET_MIB:,.2f}{TIMES} the target; "
                    f"{m.peak_rss_kib / server.idle_rss_kib:,.2f}{TIMES} idle",
                    verdict(m.peak_rss_kib),
                ]
            )
    report.add(
        Table("Targets", ["database", "target", "measured", "ratio", "verdict"], target_rows)
    )
    report.raw = {
        "args": vars(args),
        "syncs": {
            name: {"baseline": asdict(pair[0]), "full": asdict(pair[1])}
            for name, pair in syncs.items()
        },
        "servers": {
            name: {
                "idle_rss_kib": server.idle_rss_kib,
                "measurements": [m.as_json() for m in server.measurements],
            }
            for name, server in servers.items()
        },
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_arguments(parser)
    parser.add_argument("--databases", default="sqlite,postgresql", help="default: both")
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--baseline-instances", type=int, default=10_000)
    parser.add_argument("--definitions", type=int, default=1_000)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per read load")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="most seconds one sync may take"
    )
    args = parser.parse_args()
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    if set(databases) - {"sqlite", "postgresql"}:
        parser.error("--databases: sqlite and/or postgresql")
    admin_url = postgres_admin_url(args.postgres_url) if "postgresql" in databases else None
    quiet = wait_for_quiet(args.quiet_wait)
    machine = machine_description(admin_url)
    syncs: dict[str, tuple[SyncRun, SyncRun]] = {}
    servers: dict[str, ServerRun] = {}
    with (
        tempfile.TemporaryDirectory(prefix="tamma-scale-memory-", dir="/tmp") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)

        def database(name: str, label: str) -> str:
            if name == "sqlite":
                return f"sqlite:///{workdir / f'{label}.db'}"
            assert admin_url is not None
            return stack.enter_context(temp_postgres_database(admin_url, label))

        for name in databases:
            wait_for_quiet(args.quiet_wait)
            pg_admin = admin_url if name == "postgresql" else None
            with elsa_simulator(
                args.baseline_instances, definitions=args.definitions, workdir=workdir
            ) as small:
                print(f"[{name}] baseline sync of {args.baseline_instances:,}", file=sys.stderr)
                baseline = sync_once(
                    f"{name}-baseline",
                    database(name, "memory_small"),
                    small.base_url,
                    args.baseline_instances,
                    workdir,
                    pg_admin,
                    small.pid,
                    args.timeout,
                )
            url = database(name, "memory")
            with elsa_simulator(
                args.instances, definitions=args.definitions, workdir=workdir
            ) as elsa:
                print(f"[{name}] sync of {args.instances:,}", file=sys.stderr)
                full = sync_once(
                    f"{name}-full",
                    url,
                    elsa.base_url,
                    args.instances,
                    workdir,
                    pg_admin,
                    elsa.pid,
                    args.timeout,
                )
            syncs[name] = (baseline, full)
            print(
                f"[{name}] peak RSS {mib(baseline.peak_rss_kib)} / {mib(full.peak_rss_kib)}, "
                f"{full.wall_s:.0f} s",
                file=sys.stderr,
            )
            servers[name] = serve_loads(url, workdir, args, pg_admin, full.live_instances)
    report = build_report(args, machine, quiet, syncs, servers)
    report.publish(record=args.record)


if __name__ == "__main__":
    main()
