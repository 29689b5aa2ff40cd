"""Reads at scale: listing, dashboard and read throughput on 1,000,000 instances.

Usage (from the repository root; ≈ 12 min with the defaults on 2 cores):

    .venv/bin/python -m bench.scale_reads
    .venv/bin/python -m bench.scale_reads --databases postgresql --duration 5
    .venv/bin/python -m bench.scale_reads --instances 100000 --record
    .venv/bin/python -m bench.scale_reads --profile --py-spy /tmp/pyspy/bin/py-spy

Per database (a fresh SQLite file under /tmp and a fresh `tamma_bench_<random>` PostgreSQL
database, dropped afterwards), a loader process writes 1,000 definitions and 1,000,000
instances through `Store.apply_sync_batch` in batches of 5,000 (`bench/_scale_data.py`:
Zipf spread over definitions, the ELSA simulator's sub-status mix, 90 days of timestamps;
both databases load in parallel, then PostgreSQL gets `VACUUM (ANALYZE)`, and both a
checkpoint). Then, one database at a time, a real `tamma-sync serve` child process
(`--workers N`, default one process; otherwise default settings, loopback, no API key)
serves closed-loop load from a client process of its own (`bench/_scale_http.py`, raw
keep-alive HTTP/1.1 on uvloop), scenario by scenario, each with a warm-up that is not
counted:

1. listing at concurrency 16: the first page (`?pageSize=50`), deep pages by keyset
   (`cursor` from the API's own `nextCursor`, rows 50 % to 95 % down the list) against the
   same pages by offset (`page=N`), filtered by definition (50 definitions of every size,
   then deep keyset pages of the busiest one) and by subStatus (each of the six, in the
   default `createdAt` order and in `orderBy=updatedAt`);
2. `/api/dashboard/summary` and `/api/dashboard/workflows` at concurrency 16, against the
   original one-`count(*)`-per-definition pattern served
   by the same app in a process of its own (`bench/_scale_server.py --old-routes`); the
   workflows list also as browsers ask for it (`Accept-Encoding: gzip`), as a poller that
   holds it revalidates it (`If-None-Match`: 304), and
   `/api/dashboard/workflows?compact=true` (what the web page polls);
3. throughput at concurrency 64 of `/api/workflows/instances?pageSize=50` and of
   `/api/dashboard/summary`, against `/healthz` (the HTTP stack's ceiling, no database)
   and against the old summary's saturated rate;
4. the server's peak RSS (VmHWM, reset before each measured window) under each load.

The server's CPU (all threads), the PostgreSQL backends' CPU, the client's CPU and the CPU
of everything else are measured apart over each window (the server's: the supervisor and
every worker, their peak RSS summed). The client and the server share
the machine's cores. The report is printed; `--record` appends it to
bench/results/scale_reads.jsonl. `--profile` then samples the same server with py-spy
under six of the loads (not measured; py-spy is no project dependency, see
bench/_scale_profile.py) and writes summaries to bench/results/profiles/ (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx

from bench._common import (
    ATTEMPTS,
    FAILURES,
    NONE,
    REPO,
    RESULTS_DIR,
    TIMES,
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
    Measurement,
    Scenario,
    measurement_row,
    mib,
    ms,
    run_scenario,
)
from bench._scale_data import RESULT_PREFIX as LOAD_RESULT_PREFIX
from bench._scale_profile import find_py_spy, recording, summarize
from bench._servers import scale_server, tamma_sync_server

MODULE = "bench.scale_reads"
LIST = "/api/workflows/instances"
PAGE_SIZE = 50
DEEP_FRACTIONS = tuple(round(0.50 + 0.05 * step, 2) for step in range(10))
SUB_STATUSES = ("Pending", "Executing", "Suspended", "Finished", "Cancelled", "Faulted")
FILTER_DEFINITIONS = 50
TARGET_DEEP_RATIO = 1.5
TARGET_LIST_P99_MS = 25.0
TARGET_DASHBOARD_P99_MS = 50.0
TARGET_RSS_MIB = 300.0
DASHBOARD_TARGETS = (
    "summary",
    "workflows",
    "workflows_gzip",
    "workflows_revalidated",
    "workflows_compact",
)


# -- loading ---------------------------------------------------------------------------------


def load_databases(
    targets: dict[str, str], instances: int, definitions: int, workdir: Path
) -> dict[str, dict[str, float]]:
    """Fill every database at once, each from a loader process of its own."""
    running: dict[str, tuple[subprocess.Popen[str], Path, float]] = {}
    for name, url in targets.items():
        log_file = workdir / f"load-{name}.log"
        with log_file.open("w") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench._scale_data",
                    "--database-url",
                    url,
                    "--instances",
                    str(instances),
                    "--definitions",
                    str(definitions),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                text=True,
            )
        running[name] = (process, log_file, time.perf_counter())
        print(f"loading {instances:,} instances into {name} (log: {log_file})", file=sys.stderr)
    results: dict[str, dict[str, float]] = {}
    for name, (process, log_file, started) in running.items():
        code = process.wait()
        text = log_file.read_text()
        if code != 0:
            raise RuntimeError(f"loading {name} failed ({code}):\n{text[-3000:]}")
        line = next(line for line in text.splitlines()[::-1] if line.startswith(LOAD_RESULT_PREFIX))
        results[name] = json.loads(line[len(LOAD_RESULT_PREFIX) :])
        results[name]["wall_s"] = time.perf_counter() - started
    return results


def database_size(name: str, url: str) -> str:
    if name == "sqlite":
        path = Path(url.split("///", 1)[1])
        total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        return f"{total / 1024 / 1024:,.0f} MiB file"

    async def sizes() -> str:
        connection = await asyncpg.connect(url)
        try:
            row = await connection.fetchrow(
                "SELECT pg_total_relation_size('instances') AS instances,"
                " pg_total_relation_size('changes') AS changes,"
                " pg_database_size(current_database()) AS total"
            )
        finally:
            await connection.close()
        assert row is not None
        return (
            f"{row['total'] / 1024 / 1024:,.0f} MiB database (instances with indexes "
            f"{row['instances'] / 1024 / 1024:,.0f} MiB, change log "
            f"{row['changes'] / 1024 / 1024:,.0f} MiB)"
        )

    return asyncio.run(sizes())


# -- what to request -------------------------------------------------------------------------


def path(**params: Any) -> str:
    return f"{LIST}?{urlencode({'pageSize': PAGE_SIZE, **params})}"


@dataclass
class Plan:
    """Request paths, found through the API itself (not timed)."""

    total: int
    first: list[str]
    deep_keyset: list[str]
    deep_offset: list[str]
    deep_rows: tuple[int, int]
    definition_first: list[str]
    definition_sizes: tuple[int, int]
    hot_definition: str
    hot_size: int
    hot_deep_keyset: list[str]
    sub_first: list[str]
    sub_updated: list[str]
    workflows_etag: str
    notes: list[str] = field(default_factory=list)


def _cursor_at(client: httpx.Client, row: int, **params: Any) -> str:
    """The `nextCursor` that continues at 0-based `row` (read from the offset page
    before it)."""
    if row % PAGE_SIZE:
        raise ValueError("row must be a multiple of the page size")
    response = client.get(path(page=row // PAGE_SIZE, **params))
    response.raise_for_status()
    cursor = response.json().get("nextCursor")
    if not cursor:
        raise RuntimeError(f"no nextCursor at row {row} ({params})")
    return str(cursor)


def discover(base_url: str) -> Plan:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        response = client.get("/api/dashboard/workflows")
        response.raise_for_status()
        ranked = sorted(response.json(), key=lambda item: (-item["instanceCount"], item["id"]))
        total = sum(item["instanceCount"] for item in ranked)
        rows = [int(total * fraction) // PAGE_SIZE * PAGE_SIZE for fraction in DEEP_FRACTIONS]
        deep_keyset = [path(cursor=_cursor_at(client, row)) for row in rows]
        deep_offset = [path(page=row // PAGE_SIZE + 1) for row in rows]
        # The keyset page and the offset page must hold the same rows.
        for keyset, offset in zip(deep_keyset[:2], deep_offset[:2], strict=True):
            same = [[item["id"] for item in client.get(p).json()["data"]] for p in (keyset, offset)]
            if same[0] != same[1]:
                raise RuntimeError(f"keyset and offset pages differ: {keyset} vs {offset}")
        step = max(1, len(ranked) // FILTER_DEFINITIONS)
        chosen = ranked[::step][:FILTER_DEFINITIONS]
        hot = ranked[0]
        hot_rows = [
            int(hot["instanceCount"] * fraction) // PAGE_SIZE * PAGE_SIZE
            for fraction in DEEP_FRACTIONS
        ]
        hot_deep = [
            path(definitionId=hot["id"], cursor=_cursor_at(client, row, definitionId=hot["id"]))
            for row in hot_rows
            if row > 0
        ]
    return Plan(
        total=total,
        first=[path()],
        deep_keyset=deep_keyset,
        deep_offset=deep_offset,
        deep_rows=(rows[0], rows[-1]),
        definition_first=[path(definitionId=item["id"]) for item in chosen],
        definition_sizes=(chosen[-1]["instanceCount"], chosen[0]["instanceCount"]),
        hot_definition=hot["id"],
        hot_size=hot["instanceCount"],
        hot_deep_keyset=hot_deep or [path(definitionId=hot["id"])],
        sub_first=[path(subStatus=sub) for sub in SUB_STATUSES],
        sub_updated=[path(subStatus=sub, orderBy="updatedAt") for sub in SUB_STATUSES],
        workflows_etag=response.headers["etag"],
    )


# -- measuring -------------------------------------------------------------------------------


@dataclass
class DatabaseRun:
    name: str
    plan: Plan
    idle_rss_kib: int
    """Summed over the server's processes."""
    processes: int
    measurements: dict[str, Measurement]
    profiles: list[str] = field(default_factory=list)


def _scenario(
    args: argparse.Namespace,
    key: str,
    label: str,
    paths: list[str],
    concurrency: int,
    headers: dict[str, str] | None = None,
) -> Scenario:
    """A scenario measured for --duration seconds, and for at least one request per
    connection (a slow baseline still gets a sample)."""
    return Scenario(
        key,
        label,
        paths,
        concurrency,
        args.duration,
        args.warmup,
        min_requests=concurrency,
        max_time=args.max_time,
        headers=headers or {},
    )


def listing_scenarios(plan: Plan, args: argparse.Namespace) -> list[Scenario]:
    c = args.concurrency
    low, high = plan.deep_rows
    small, large = plan.definition_sizes
    return [
        _scenario(args, "first", "first page", plan.first, c),
        _scenario(
            args,
            "deep_keyset",
            f"deep page, keyset `cursor` (rows {low:,}{NONE}{high:,})",
            plan.deep_keyset,
            c,
        ),
        _scenario(
            args,
            "deep_offset",
            f"deep page, offset `page=N` (same rows) {NONE} baseline",
            plan.deep_offset,
            c,
        ),
        _scenario(
            args,
            "definition_first",
            f"`definitionId` ({len(plan.definition_first)} definitions, "
            f"{small:,}{NONE}{large:,} instances), first page",
            plan.definition_first,
            c,
        ),
        _scenario(
            args,
            "definition_deep",
            f"`definitionId` (busiest, {plan.hot_size:,} instances), deep keyset pages",
            plan.hot_deep_keyset,
            c,
        ),
        _scenario(
            args,
            "sub_first",
            "`subStatus` (each of 6), first page, default order (createdAt)",
            plan.sub_first,
            c,
        ),
        _scenario(
            args,
            "sub_updated",
            "`subStatus` (each of 6), first page, `orderBy=updatedAt`",
            plan.sub_updated,
            c,
        ),
    ]


def dashboard_scenarios(
    args: argparse.Namespace, old: bool, workflows_etag: str = ""
) -> list[Scenario]:
    prefix = "/bench/old" if old else "/api"
    tag = "old_" if old else ""
    suffix = f" {NONE} old pattern (1 `count(*)` per definition)" if old else ""
    scenarios = [
        _scenario(
            args,
            f"{tag}{name}",
            f"`/api/dashboard/{name}`{suffix}",
            [f"{prefix}/dashboard/{name}"],
            args.concurrency,
        )
        for name in ("summary", "workflows")
    ]
    if not old:
        workflows = "/api/dashboard/workflows"
        compact = f"{workflows}?compact=true"  # what the web page polls
        scenarios += [
            _scenario(
                args,
                "workflows_gzip",
                f"`{workflows}`, `Accept-Encoding: gzip` (as browsers ask; not decompressed)",
                [workflows],
                args.concurrency,
                {"Accept-Encoding": "gzip"},
            ),
            _scenario(
                args,
                "workflows_revalidated",
                f"`{workflows}`, `If-None-Match` its ETag (a poller that holds it: 304)",
                [workflows],
                args.concurrency,
                {"If-None-Match": workflows_etag},
            ),
            _scenario(args, "workflows_compact", f"`{compact}`", [compact], args.concurrency),
        ]
    return scenarios


def throughput_scenarios(args: argparse.Namespace) -> list[Scenario]:
    c = args.throughput_concurrency
    return [
        _scenario(args, "tp_healthz", f"`/healthz` {NONE} HTTP stack ceiling", ["/healthz"], c),
        _scenario(args, "tp_list", f"`{LIST}?pageSize=50`", [path()], c),
        _scenario(args, "tp_summary", "`/api/dashboard/summary`", ["/api/dashboard/summary"], c),
    ]


def measure_database(
    name: str, url: str, args: argparse.Namespace, admin_url: str | None, workdir: Path
) -> DatabaseRun:
    measurements: dict[str, Measurement] = {}
    pg = name == "postgresql"

    def run(scenarios: Sequence[Scenario], pids: list[int], port: int) -> None:
        for scenario in scenarios:
            print(f"[{name}] {scenario.key}: {scenario.label}", file=sys.stderr)
            for attempt in range(1, ATTEMPTS + 1):
                measurement = run_scenario(
                    scenario,
                    pids,
                    port,
                    admin_url=admin_url if pg else None,
                    database_url=url if pg else None,
                )
                cores = measurement.foreign_cores
                if cores <= args.max_foreign or attempt == ATTEMPTS:
                    break
                FAILURES.append(
                    f"{name}, {scenario.label}: attempt {attempt} disturbed ({cores:.2f} cores "
                    "used by other users' processes); measured again"
                )
                print(f"warning: {FAILURES[-1]}", file=sys.stderr)
                wait_for_quiet(args.quiet_wait)
            measurements[scenario.key] = measurement
            print(
                f"    {measurement.requests:,} requests, {measurement.rate:,.1f}/s, "
                f"p50 {ms(measurement.p('p50'))}, p99 {ms(measurement.p('p99'))}, "
                f"statuses {measurement.statuses}",
                file=sys.stderr,
            )

    profiles: list[str] = []
    with tamma_sync_server(url, workdir, workers=args.workers) as server:
        plan = discover(server.base_url)
        time.sleep(1.0)
        pids = server.server_pids()
        idle_rss = sum(memory_kib(pid).get("VmRSS", 0) for pid in pids)
        run(listing_scenarios(plan, args), pids, server.port)
        run(dashboard_scenarios(args, False, plan.workflows_etag), pids, server.port)
        run(throughput_scenarios(args), pids, server.port)
        if args.py_spy_path is not None:
            profiles = profile_scenarios(
                # One worker under --workers: each serves the same mix.
                name,
                plan,
                args,
                pids[-1],
                server.port,
                args.py_spy_path,
            )
    if not args.skip_old:
        with scale_server(url, workdir, old_routes=True, name="old-pattern") as old:
            run(dashboard_scenarios(args, old=True), [old.pid], old.port)
    return DatabaseRun(name, plan, idle_rss, len(pids), measurements, profiles)


PROFILED = ("first", "deep_offset", "definition_first", "summary", "workflows", "tp_list")
#: py-spy's stacks and their summaries: kept beside the history, but not in git.
PROFILES_DIR = RESULTS_DIR / "profiles"


def profile_scenarios(
    name: str,
    plan: Plan,
    args: argparse.Namespace,
    pid: int,
    port: int,
    py_spy: str,
) -> list[str]:
    """Sample the real server with py-spy under a few of the loads again (not measured)."""
    chosen = {
        s.key: s
        for s in listing_scenarios(plan, args)
        + dashboard_scenarios(args, False, plan.workflows_etag)
        + throughput_scenarios(args)
    }
    PROFILES_DIR.mkdir(parents=True, exist_ok=True)
    digests = []
    seconds = min(args.duration, 8.0)
    for key in PROFILED:
        scenario = chosen[key]
        print(f"[{name}] profiling {key}", file=sys.stderr)
        raw = PROFILES_DIR / f"scale_reads-{name}-{key}.collapsed"
        short = Scenario(
            scenario.key, scenario.label, scenario.paths, scenario.concurrency, seconds, 1.0
        )
        with recording(py_spy, pid, seconds + 1.0, raw):
            run_scenario(short, [pid], port)
        summary = summarize(raw, f"{name}: {scenario.label}")
        target = raw.with_suffix(".md")
        target.write_text(summary)
        digests.append(f"- {scenario.label}: `{target.relative_to(REPO)}`")
    return digests


# -- the report ------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def x(value: float, baseline: float) -> str:
    return f"{value / baseline:,.2f}{TIMES}" if baseline and value == value else "n/a"


def targets_table(runs: Sequence[DatabaseRun]) -> Table:
    rows: list[list[str]] = []
    for run in runs:
        m = run.measurements
        first, deep, offset = m["first"], m["deep_keyset"], m["deep_offset"]
        for stat in ("p50", "p99"):
            ratio = deep.p(stat) / first.p(stat)
            rows.append(
                [
                    run.name,
                    f"deep keyset page {stat} ≤ {TARGET_DEEP_RATIO}{TIMES} first page {stat}",
                    f"{ms(deep.p(stat))} vs {ms(first.p(stat))}",
                    f"{ratio:,.2f}{TIMES}",
                    verdict(ratio <= TARGET_DEEP_RATIO),
                ]
            )
        rows.append(
            [
                run.name,
                "(info) offset page at the same depth vs keyset page, p50",
                f"{ms(offset.p('p50'))} vs {ms(deep.p('p50'))}",
                x(offset.p("p50"), deep.p("p50")),
                NONE,
            ]
        )
        if run.name == "postgresql":
            for key in (
                "first",
                "deep_keyset",
                "definition_first",
                "definition_deep",
                "sub_first",
                "sub_updated",
            ):
                p99 = m[key].p("p99")
                rows.append(
                    [
                        run.name,
                        f"listing p99 ≤ {TARGET_LIST_P99_MS:.0f} ms at concurrency "
                        f"{m[key].concurrency}: {m[key].label}",
                        ms(p99),
                        f"{p99 / TARGET_LIST_P99_MS:,.2f}{TIMES} the target",
                        verdict(p99 <= TARGET_LIST_P99_MS),
                    ]
                )
        for key in DASHBOARD_TARGETS:
            if key not in m:
                continue
            p99 = m[key].p("p99")
            rows.append(
                [
                    run.name,
                    f"{m[key].label} p99 ≤ {TARGET_DASHBOARD_P99_MS:.0f} ms at concurrency "
                    f"{m[key].concurrency}",
                    ms(p99),
                    f"{p99 / TARGET_DASHBOARD_P99_MS:,.2f}{TIMES} the target",
                    verdict(p99 <= TARGET_DASHBOARD_P99_MS),
                ]
            )
            old = m.get(f"old_{key}")
            if old is not None:
                rows.append(
                    [
                        run.name,
                        f"{m[key].label} vs the old pattern (p50; throughput)",
                        f"{ms(m[key].p('p50'))} vs {ms(old.p('p50'))}; "
                        f"{fmt(m[key].rate)}/s vs {fmt(old.rate)}/s",
                        f"{x(old.p('p50'), m[key].p('p50'))} faster; "
                        f"{x(m[key].rate, old.rate)} the throughput",
                        NONE,
                    ]
                )
        loads = [item for item in m.values() if not item.key.startswith("old_")]
        peak = max(item.largest_peak_rss_kib for item in loads)
        measured = f"{mib(peak)} (idle after start: {mib(run.idle_rss_kib)})"
        if run.processes > 1:
            total = max(item.peak_rss_kib for item in loads)
            measured = (
                f"{mib(peak)}, the largest of {run.processes} processes (all together "
                f"{mib(total)}; idle after start: {mib(run.idle_rss_kib)} together)"
            )
        rows.append(
            [
                run.name,
                f"server peak RSS under load ≤ {TARGET_RSS_MIB:.0f} MB, per process",
                measured,
                f"{peak / 1024 / TARGET_RSS_MIB:,.2f}{TIMES} the target",
                verdict(peak / 1024 <= TARGET_RSS_MIB),
            ]
        )
    return Table("Targets", ["database", "target", "measured", "ratio", "verdict"], rows)


def _processes(workers: int) -> str:
    return "1 server process" if workers == 1 else f"{workers} server worker processes"


def _workers_text(workers: int) -> str:
    if workers == 1:
        return "one uvicorn process"
    return f"`--workers {workers}`: {workers} uvicorn processes on one socket, plus the supervisor"


def throughput_table(runs: Sequence[DatabaseRun], concurrency: int, workers: int) -> Table:
    rows = []
    for run in runs:
        m = run.measurements
        ceiling = m["tp_healthz"]
        old = m.get("old_summary")
        for key in ("tp_healthz", "tp_list", "tp_summary"):
            item = m[key]
            versus_old = NONE
            if key == "tp_summary" and old is not None:
                versus_old = f"{x(item.rate, old.rate)} ({fmt(old.rate)}/s)"
            rows.append(
                [
                    run.name,
                    item.label,
                    f"**{fmt(item.rate)}/s**",
                    ms(item.p("p50")),
                    f"**{ms(item.p('p99'))}**",
                    x(item.rate, ceiling.rate),
                    versus_old,
                    ms(item.per_request_ms(item.server_cpu)),
                    f"{item.server_cpu / item.elapsed:,.2f}" if item.elapsed else NONE,
                    f"{item.backend_cpu / item.elapsed:,.2f}" if item.backend_cpu else NONE,
                    f"{item.client_cpu / item.elapsed:,.2f}" if item.elapsed else NONE,
                    mib(item.peak_rss_kib),
                ]
            )
    return Table(
        "Read throughput",
        [
            "database",
            f"endpoint (concurrency {concurrency}, {_processes(workers)})",
            "requests/s",
            "p50",
            "p99",
            "vs `/healthz`",
            "vs old-pattern summary (its saturated rate at concurrency 16)",
            "server CPU / req",
            "server cores",
            "PostgreSQL cores",
            "client cores",
            "server peak RSS",
        ],
        rows,
    )


def build_report(
    args: argparse.Namespace,
    machine: dict[str, str],
    loads: dict[str, dict[str, float]],
    sizes: dict[str, str],
    runs: Sequence[DatabaseRun],
    quiet: float,
) -> Report:
    report = Report(
        f"Scale reads: {args.instances:,} instances {TIMES} {args.definitions:,} definitions",
        MODULE,
        machine,
    )
    load_lines = "\n".join(
        f"- {name}: {int(load['instances']):,} instances written in {load['write_s']:.0f} s "
        f"({load['instances'] / load['write_s']:,.0f}/s, both databases loading at once), "
        f"{sizes.get(name, '?')}"
        for name, load in loads.items()
    )
    plan_lines = "\n".join(
        f"- {run.name}: {run.plan.total:,} live instances; busiest definition "
        f"{run.plan.hot_size:,} instances"
        for run in runs
    )
    report.add(
        f"""
Data: {args.definitions:,} definitions from the ELSA simulator (activities and variables
included), {args.instances:,} instances written through `Store.apply_sync_batch` in batches
of 5,000 by a loader process (`bench/_scale_data.py`: Zipf spread over definitions, the
simulator's sub-status mix, 90 days of timestamps, written in `updatedAt` order like the
sync); PostgreSQL then `VACUUM (ANALYZE)`, SQLite as the server leaves it (no ANALYZE);
both then checkpoint, so the reads do not find the load still being written out.

{load_lines}
{plan_lines}

Server: one `tamma-sync serve` child process (the CLI, default settings,
**{_workers_text(args.workers)}**, uvloop + httptools, access log on as by default, no API
key: open on loopback) for the new endpoints; the old counting pattern is served by the
same app with two extra routes (`bench/_scale_server.py --old-routes`) in a process of its
own, after the first one stopped. Client: a separate process (`bench/_scale_http.py`: raw
keep-alive HTTP/1.1 on uvloop, closed loop, one connection per concurrent request, paths
round-robin), warm-up
{args.warmup:g} s then {args.duration:g} s measured per scenario. **The client and the server
share the machine's {os.cpu_count()} cores** (so do the PostgreSQL backends): server CPU,
PostgreSQL backend CPU and client CPU are measured apart (per request in the tables), the
latencies include the client's share. `other CPU`: what the rest of the machine used during
the window (PostgreSQL's own processes and connection start-ups included), and in brackets
the part used by other users' processes (near 0 = undisturbed; a scenario disturbed by more
than {args.max_foreign:g} cores is measured again). Machine busy before start: {quiet:.2f} cores.
"""
    )
    for run in runs:
        m = run.measurements
        listing = [
            m[key]
            for key in (
                "first",
                "deep_keyset",
                "deep_offset",
                "definition_first",
                "definition_deep",
                "sub_first",
                "sub_updated",
            )
        ]
        report.add(
            Table(
                f"Listing, {run.name} (concurrency {args.concurrency})",
                MEASUREMENT_HEADER,
                [measurement_row(item) for item in listing],
            )
        )
        dash = [
            m[key]
            for target in DASHBOARD_TARGETS
            for key in (target, f"old_{target}")  # each beside its old-pattern baseline
            if key in m
        ]
        report.add(
            Table(
                f"Dashboard, {run.name} (concurrency {args.concurrency})",
                MEASUREMENT_HEADER,
                [measurement_row(item) for item in dash],
            )
        )
    report.add(throughput_table(runs, args.throughput_concurrency, args.workers))
    report.add(targets_table(runs))
    report.add(
        "Latencies are closed-loop at the stated concurrency against "
        f"{_processes(args.workers)}. By Little's law the mean latency is concurrency / "
        "throughput: once the server is saturated, a request waits for the ones queued before it. "
        f"A p99 of {TARGET_LIST_P99_MS:.0f} ms at concurrency {args.concurrency} needs "
        f"well over {args.concurrency / TARGET_LIST_P99_MS * 1000:,.0f} requests/s, "
        f"and {TARGET_DASHBOARD_P99_MS:.0f} ms needs over "
        f"{args.concurrency / TARGET_DASHBOARD_P99_MS * 1000:,.0f}/s."
    )
    for run in runs:
        if run.profiles:
            report.add(
                f"Profiles of the server ({run.name}; py-spy, running threads only, taken "
                "after the measurements under the same loads):\n\n" + "\n".join(run.profiles)
            )
    report.raw = {
        "args": vars(args),
        "loads": loads,
        "sizes": sizes,
        "runs": {
            run.name: {
                "idle_rss_kib": run.idle_rss_kib,
                "plan": {k: v for k, v in vars(run.plan).items() if not isinstance(v, list)},
                "measurements": {k: v.as_json() for k, v in run.measurements.items()},
                "profiles": run.profiles,
            }
            for run in runs
        },
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_arguments(parser)
    parser.add_argument("--databases", default="sqlite,postgresql", help="default: both")
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--definitions", type=int, default=1_000)
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds measured per scenario"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per scenario")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=1, help="`tamma-sync serve --workers` (default 1)"
    )
    parser.add_argument("--throughput-concurrency", type=int, default=64)
    parser.add_argument(
        "--max-time",
        type=float,
        default=180.0,
        help="most seconds a scenario goes on to get one request per connection (default 180)",
    )
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=0.2,
        help="re-measure a scenario (up to 3 times) during which other users' processes used "
        "more cores than this (default 0.2)",
    )
    parser.add_argument("--skip-old", action="store_true", help="no old-pattern baselines")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the server with py-spy under a few loads (see bench/_scale_profile.py)",
    )
    parser.add_argument("--py-spy", default=None, help="path of py-spy (default: on PATH)")
    args = parser.parse_args()
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(databases) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown databases: {sorted(unknown)}")
    args.py_spy_path = None
    if args.profile:
        args.py_spy_path = find_py_spy(args.py_spy)
        if args.py_spy_path is None:
            parser.error("--profile needs py-spy: pip install --target /tmp/pyspy py-spy")
    admin_url = postgres_admin_url(args.postgres_url) if "postgresql" in databases else None
    quiet = wait_for_quiet(args.quiet_wait)
    machine = machine_description(admin_url)
    with (
        tempfile.TemporaryDirectory(prefix="tamma-scale-reads-", dir="/tmp") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        targets: dict[str, str] = {}
        for name in databases:
            if name == "sqlite":
                targets[name] = f"sqlite:///{workdir / 'scale.db'}"
            else:
                assert admin_url is not None
                targets[name] = stack.enter_context(temp_postgres_database(admin_url, "scale"))
        loads = load_databases(targets, args.instances, args.definitions, workdir)
        sizes = {name: database_size(name, url) for name, url in targets.items()}
        runs = []
        for name, url in targets.items():
            wait_for_quiet(args.quiet_wait)
            runs.append(measure_database(name, url, args, admin_url, workdir))
    report = build_report(args, machine, loads, sizes, runs, quiet)
    report.publish(record=args.record)


if __name__ == "__main__":
    main()
