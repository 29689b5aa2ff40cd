"""Reads of the dashboard's explorer, instance and definition pages, and of its trend
charts, on 1,000,000 instances.

Usage (from the repository root; ≈ 18 min with the defaults on 2 cores):

    .venv/bin/python -m bench.explorer_reads
    .venv/bin/python -m bench.explorer_reads --instances 20000 --duration 3
    .venv/bin/python -m bench.explorer_reads --databases postgresql --record
    .venv/bin/python -m bench.explorer_reads --only trends

Per database (a fresh SQLite file under /tmp and a fresh `tamma_bench_<random>` PostgreSQL
database, dropped afterwards), the data of `bench.scale_reads`: 1,000 definitions and
1,000,000 instances written through `Store.apply_sync_batch` by a loader process
(`bench/_scale_data.py`: Zipf spread over definitions, the simulator's sub-status mix, 90
days of timestamps; both databases load in parallel, PostgreSQL then `VACUUM (ANALYZE)`).
Then, before serving, `bench/_explorer_data.py` writes 200 updates to each of 20 running
instances through `Store.update_instance` (round by round, so their histories are long and
interleaved) and draws, seeded, the values the requests are made of. A real
`tamma-sync serve` child process (default settings, loopback, no API key) then serves
closed-loop load from a client process of its own (`bench/_scale_http.py`), scenario by
scenario, each with a warm-up that is not counted, at concurrency 16:

0. the baseline: the first page of the plain list, `GET /api/workflows/instances?pageSize=50`;
1. the explorer's filtered pages, as the page asks for them (its default order
   `orderBy=updatedAt&orderDirection=desc` unless stated, `pageSize=50`): the first page
   with `includeTotal=true`, and "More" pages (the API's own `nextCursor`, up to three
   pages on, `includeTotal=false`): `definitionId`+`subStatus` (50 definitions of every
   size, each with one of the six sub-statuses), `sourceId`, one-day windows of
   `createdSince`/`createdBefore` (`orderBy=createdAt`) and of `updatedSince`/`updatedBefore`,
   `idPrefix` (3 and 4 characters of real ids; the first page also with
   `includeTotal=false`), `correlationId`, and `currentActivity`+`definitionId`+
   `status=Running` (the definition page's link; only if the server filters by it);
2. `GET /api/workflows/instances/{id}/history` of random instances, and of the 20 with long
   histories;
3. `GET /api/workflows/definitions/{id}/activities` of the 50 definitions, and of the
   busiest alone (skipped if it answers 404 for every one: an older server);
4. `GET /api/workflows/trends` for each window (hour, day, week), for all definitions and
   for the 50 definitions (skipped if it answers 404: an older server).

Each is reported against the baseline (p50 and p99 ratios) and the target, p99 ≤ 50 ms.
Listing scenarios that miss it are then explained: the store's statement for up to 10 of
their requests, timed alone, and the plan of the slowest (`--explain all`: every listing
scenario). The report is
printed; `--record` appends it to bench/results/explorer_reads.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench._common import (
    ATTEMPTS,
    FAILURES,
    TIMES,
    Report,
    Table,
    code_checkpoint,
    common_arguments,
    fresh_database,
    machine_description,
    postgres_admin_url,
    wait_for_quiet,
)
from bench._explorer_data import Sample, explain, prepare
from bench._explorer_plan import Plan, discover
from bench._scale_common import (
    MEASUREMENT_HEADER,
    Measurement,
    Scenario,
    measurement_row,
    ms,
    run_scenario,
)
from bench._servers import tamma_sync_server
from bench.scale_reads import database_size, load_databases

MODULE = "bench.explorer_reads"
TARGET_P99_MS = 50.0
#: Seconds spent waiting for a quiet machine: not part of the run time reported.
WAITED: list[float] = []


def quiet_machine(args: argparse.Namespace) -> float:
    """`wait_for_quiet`, its wait counted apart."""
    started = time.perf_counter()
    busy = wait_for_quiet(args.quiet_wait)
    WAITED.append(time.perf_counter() - started)
    return busy


# -- measuring -------------------------------------------------------------------------------


@dataclass
class DatabaseRun:
    name: str
    plan: Plan
    measurements: dict[str, Measurement]
    plans: dict[str, str] = field(default_factory=dict)
    """EXPLAIN output of listing scenarios, by key."""


def measure(
    name: str,
    url: str,
    sample: Sample,
    args: argparse.Namespace,
    admin_url: str | None,
    workdir: Path,
) -> DatabaseRun:
    pg = name == "postgresql"
    measurements: dict[str, Measurement] = {}
    code_checkpoint(f"{name} server")
    with tamma_sync_server(url, workdir) as server:
        found = time.perf_counter()
        plan = discover(server.base_url, sample, args)
        if args.only:
            plan.scenarios = [
                p
                for p in plan.scenarios
                if p.key == "baseline" or p.key.startswith(tuple(args.only))
            ]
        print(f"[{name}] paths found in {time.perf_counter() - found:.0f} s", file=sys.stderr)
        time.sleep(1.0)
        pids = server.server_pids()
        for planned in plan.scenarios:
            scenario = Scenario(
                planned.key,
                planned.label,
                planned.paths,
                args.concurrency,
                args.duration,
                args.warmup,
                min_requests=args.concurrency,
                max_time=args.max_time,
            )
            print(f"[{name}] {scenario.key}: {scenario.label}", file=sys.stderr)
            for attempt in range(1, ATTEMPTS + 1):
                measurement = run_scenario(
                    scenario,
                    pids,
                    server.port,
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
                quiet_machine(args)
            measurements[scenario.key] = measurement
            print(
                f"    {measurement.requests:,} requests, {measurement.rate:,.1f}/s, "
                f"p50 {ms(measurement.p('p50'))}, p99 {ms(measurement.p('p99'))}, "
                f"statuses {measurement.statuses}",
                file=sys.stderr,
            )
    explained = {
        p.key: p.requests
        for p in plan.scenarios
        if p.requests
        and args.explain != "none"
        and (args.explain == "all" or not measurement_meets(measurements[p.key]))
    }
    plans = asyncio.run(explain(url, explained)) if explained else {}
    return DatabaseRun(name, plan, measurements, plans)


def measurement_meets(m: Measurement) -> bool:
    return m.ok and m.p("p99") <= TARGET_P99_MS


# -- the report ------------------------------------------------------------------------------


def x(value: float, baseline: float) -> str:
    return f"{value / baseline:,.2f}{TIMES}" if baseline and value == value else "n/a"


def figures_table(runs: Sequence[DatabaseRun]) -> Table:
    rows = []
    for run in runs:
        base = run.measurements["baseline"]
        short = {p.key: p.short for p in run.plan.scenarios}
        for key, m in run.measurements.items():
            if key == "baseline":
                continue
            met = measurement_meets(m)
            rows.append(
                [
                    run.name,
                    short.get(key, m.label),
                    ms(m.p("p50")),
                    f"**{ms(m.p('p99'))}**",
                    f"{ms(base.p('p50'))} / {ms(base.p('p99'))}",
                    f"{x(m.p('p50'), base.p('p50'))} / {x(m.p('p99'), base.p('p99'))}",
                    f"{x(m.p('p99'), TARGET_P99_MS)} the target",
                    "met" if met else "**missed**",
                ]
            )
    return Table(
        f"Against the baseline and the target (p99 ≤ {TARGET_P99_MS:.0f} ms)",
        [
            "database",
            "read",
            "p50",
            "p99",
            "baseline p50 / p99",
            "ratio p50 / p99",
            "p99 vs target",
            "verdict",
        ],
        rows,
    )


def build_report(
    args: argparse.Namespace,
    machine: dict[str, str],
    loads: dict[str, dict[str, float]],
    sizes: dict[str, str],
    samples: dict[str, Sample],
    runs: Sequence[DatabaseRun],
    quiet: float,
    run_s: float,
) -> Report:
    report = Report(
        f"Explorer reads: {args.instances:,} instances {TIMES} {args.definitions:,} definitions",
        MODULE,
        machine,
    )
    data_lines = "\n".join(
        f"- {name}: {int(load['instances']):,} instances written in {load['write_s']:.0f} s "
        f"(both databases loading at once), {sizes.get(name, '?')}; then "
        f"{samples[name].updates:,} history updates in {samples[name].updates_s:.1f} s"
        for name, load in loads.items()
    )
    report.add(
        f"""
Data: as `bench.scale_reads` loads it ({args.definitions:,} definitions from the ELSA
simulator, {args.instances:,} instances through `Store.apply_sync_batch`, Zipf spread
over definitions, the simulator's sub-status mix, 90 days of timestamps; PostgreSQL then
`VACUUM (ANALYZE)`, SQLite as the server leaves it), then {args.history_updates} updates
through `Store.update_instance` to each of {args.history_instances} running instances
(round by round: sub-status, activity, variables and `updatedAt` move each time), so each
has a history of {args.history_updates + 1} changes.

{data_lines}

Server: one `tamma-sync serve` child process (the CLI, default settings, one uvicorn
process, no API key: open on loopback). Client: a separate process
(`bench/_scale_http.py`: raw keep-alive HTTP/1.1, closed loop, concurrency
{args.concurrency}, paths round-robin), warm-up {args.warmup:g} s then {args.duration:g} s
measured per scenario (and on until every connection got one answer, at most
{args.max_time:g} s). The explorer's requests carry its default order
(`orderBy=updatedAt&orderDirection=desc`) unless stated, `pageSize=50`, and
`includeTotal=true` on a first page, `false` on a More page, as explorer.js asks. The
baseline is the first page of the plain list on the same server and database, measured
first. **Client, server and PostgreSQL share the machine's cores.** Machine busy before
start: {quiet:.2f} cores. Run time: {run_s / 60:.1f} min (waits for a quiet machine left out).
"""
    )
    for run in runs:
        report.add(
            Table(
                f"Reads, {run.name} (concurrency {args.concurrency})",
                MEASUREMENT_HEADER,
                [measurement_row(m) for m in run.measurements.values()],
            )
        )
    report.add(figures_table(runs))
    for run in runs:
        short = {p.key: p.short for p in run.plan.scenarios}
        measured = [m for k, m in run.measurements.items() if k != "baseline"]
        missed = [m for m in measured if not measurement_meets(m)]
        line = (
            f"**{run.name}: {len(measured) - len(missed)} of {len(measured)} reads meet "
            f"p99 ≤ {TARGET_P99_MS:.0f} ms at concurrency {args.concurrency}.**"
        )
        if missed:
            line += (
                " Missed: "
                + "; ".join(f"{short.get(m.key, m.label)} ({ms(m.p('p99'))})" for m in missed)
                + "."
            )
        report.verdict(line)
    notes = sorted({note for run in runs for note in run.plan.notes})
    if notes:
        report.add("Not measured, or measured in part:\n\n" + "\n".join(f"- {n}" for n in notes))
    report.add(
        "By Little's law the mean latency is concurrency / throughput once the server is "
        f"saturated: a p99 of {TARGET_P99_MS:.0f} ms at concurrency {args.concurrency} needs "
        f"well over {args.concurrency / TARGET_P99_MS * 1000:,.0f} requests/s, i.e. under "
        f"{1000 / (args.concurrency / TARGET_P99_MS * 1000):.1f} ms of work per request "
        "for server, database and client together."
    )
    for run in runs:
        if run.plans:
            short = {p.key: p.short for p in run.plan.scenarios}
            blocks = "\n\n".join(
                f"{short[key]}:\n\n```\n{text}\n```" for key, text in run.plans.items()
            )
            report.add(
                f"Plans, {run.name}, of each listing scenario "
                f"{'measured' if args.explain == 'all' else 'that missed the target'}: the "
                "store's statement for up to 10 of its requests, run alone one at a time after "
                f"the measurements (`bench/_explorer_data.py`), and the slowest one's plan:"
                f"\n\n{blocks}"
            )
    report.raw = {
        "args": vars(args),
        "run_s": run_s,
        "loads": loads,
        "sizes": sizes,
        "samples": {name: sample.as_json() for name, sample in samples.items()},
        "runs": {
            run.name: {
                "notes": run.plan.notes,
                "paths": {p.key: len(p.paths) for p in run.plan.scenarios},
                "measurements": {k: v.as_json() for k, v in run.measurements.items()},
                "plans": run.plans,
            }
            for run in runs
        },
    }
    return report


def main() -> None:
    started = time.perf_counter()
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
    parser.add_argument(
        "--spread", type=int, default=50, help="definitions filtered by, over every size"
    )
    parser.add_argument("--samples", type=int, default=200, help="random instances drawn")
    parser.add_argument("--history-instances", type=int, default=20)
    parser.add_argument("--history-updates", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7, help="of the values drawn")
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="measure only the scenarios whose key starts so (and the baseline), "
        "e.g. --only trends history",
    )
    parser.add_argument(
        "--explain",
        choices=("missed", "all", "none"),
        default="missed",
        help="which listing scenarios' statements to explain after measuring (default missed)",
    )
    args = parser.parse_args()
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(databases) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown databases: {sorted(unknown)}")
    admin_url = postgres_admin_url(args.postgres_url) if "postgresql" in databases else None
    quiet = quiet_machine(args)
    machine = machine_description(admin_url)
    with (
        tempfile.TemporaryDirectory(prefix="tamma-explorer-reads-", dir="/tmp") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        targets = {
            name: stack.enter_context(fresh_database(name, admin_url, workdir, "explorer"))
            for name in databases
        }
        loads = load_databases(targets, args.instances, args.definitions, workdir)
        samples: dict[str, Sample] = {}
        for name, url in targets.items():
            print(f"[{name}] writing histories, drawing values", file=sys.stderr)
            samples[name] = asyncio.run(
                prepare(
                    url,
                    seed=args.seed,
                    samples=args.samples,
                    spread_count=args.spread,
                    history_instances=args.history_instances,
                    history_updates=args.history_updates,
                )
            )
        sizes = {name: database_size(name, url) for name, url in targets.items()}
        runs = []
        for name, url in targets.items():
            quiet_machine(args)
            runs.append(measure(name, url, samples[name], args, admin_url, workdir))
    run_s = time.perf_counter() - started - sum(WAITED)
    report = build_report(args, machine, loads, sizes, samples, runs, quiet, run_s)
    report.publish(record=args.record)


if __name__ == "__main__":
    main()
