"""Initial mirror of N ELSA instances (default 100,000): the new sync against the old protocol.

New: the real `SyncService` + `StoreSink` (the embedded sink, as `tamma-sync serve` runs it)
with default `SyncOptions` except the details policy, one full cycle (definitions, the
instance delta walk from an empty cursor, and whatever else a first cycle does), in a child
process of its own, into a fresh SQLite file and a fresh PostgreSQL database.

Baseline, same run, same database kind: the old .NET `WorkflowSyncService` protocol
replayed against a real `tamma-sync serve` child process:
read ELSA's instance list 100 at a time, then for each instance `PUT
/api/workflows/instances/{id}` with the .NET body and `POST /api/workflows/instances` on 404,
one request at a time, over a keep-alive HTTP/1.1 connection. Timed on a sample.

The ELSA simulator runs in a third process, so its CPU never competes with the sync for
one GIL. `python -m bench.sync_initial --help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import sqlalchemy as sa

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
    machine_description,
    memory_kib,
    postgres_admin_url,
    ratio,
    retrying,
    temp_postgres_database,
    wait_for_quiet,
)
from bench._servers import Child, elsa_simulator, tamma_sync_server
from tamma_sync.elsa import ElsaClient
from tamma_sync.elsa.timestamps import ElsaTimestamp
from tamma_sync.runtime import tune_runtime
from tamma_sync.settings import DetailsPolicy, SourceSettings, normalize_database_url
from tamma_sync.store import Store
from tamma_sync.sync import StoreSink, SyncOptions, SyncService

MODULE = "bench.sync_initial"
TARGET_RATE = 20_000.0
TARGET_RATIO = 20.0
RESULT_PREFIX = "RESULT "
ELSA_API_KEY = "00000000-0000-0000-0000-000000000000"
#: The .NET service read ELSA 100 rows at a time (contract §4.4).
OLD_PAGE_SIZE = 100


# -- the new sync, in a worker process -------------------------------------------------------


class SyncTimeout(Exception):
    """A sync run exceeded --timeout (not retried: it would only take as long again)."""


async def _sync_once(
    database_url: str, elsa_url: str, details: str, page_size: int
) -> dict[str, Any]:
    store = Store.from_url(normalize_database_url(database_url))
    await store.migrate()
    source = SourceSettings(id="elsa", url=elsa_url, api_key=ELSA_API_KEY)
    options = SyncOptions(page_size=page_size, details=DetailsPolicy(details))
    marks: list[tuple[float, int]] = []
    try:
        async with ElsaClient.from_settings(source, page_size=options.page_size) as client:
            service = SyncService(source, client, StoreSink(store, source.tenant_id), options)
            service.on_progress = lambda rows: marks.append((time.perf_counter(), rows))
            cpu_before = time.process_time()
            started = time.perf_counter()
            report = await service.run_cycle()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
        async with store.sql_engine.connect() as conn:
            live = (
                await conn.execute(
                    sa.text("SELECT count(*) FROM instances WHERE deleted_at IS NULL")
                )
            ).scalar_one()
            changes = (await conn.execute(sa.text("SELECT count(*) FROM changes"))).scalar_one()
    finally:
        await store.close()
    instances_done = marks[-1][0] - started if marks else elapsed
    return {
        "details": details,
        "elapsed_s": elapsed,
        "instances_phase_s": instances_done,
        "after_instances_s": elapsed - instances_done,
        "rows_seen": sum(rows for _, rows in marks),
        "pages": len(marks),
        "created": report.written.created,
        "updated": report.written.updated,
        "unchanged": report.written.unchanged,
        "deleted": report.written.deleted,
        "details_fetched": report.details_fetched,
        "reconciled": report.reconciled,
        "error": report.error,
        "live_instances": live,
        "change_rows": changes,
        "worker_cpu_s": cpu,
        "memory_kib": memory_kib(os.getpid()),
        "worker_total_cpu_s": time.process_time(),
    }


def _worker(args: argparse.Namespace) -> None:
    tune_runtime()  # as `tamma-sync sync` and the server do
    coroutine = _sync_once(args.database_url, args.elsa_url, args.details, args.page_size)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(coroutine)
    else:
        result = asyncio.run(coroutine)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_new_sync(
    database_url: str,
    elsa: Child,
    details: str,
    page_size: int,
    loop: str,
    admin_url: str | None,
    timeout: float,
) -> dict[str, Any]:
    """One initial sync in a fresh worker process; the simulator's CPU measured alongside."""
    command = [
        sys.executable,
        "-m",
        MODULE,
        "--worker",
        "--database-url",
        database_url,
        "--elsa-url",
        elsa.base_url,
        "--details",
        details,
        "--page-size",
        str(page_size),
        "--loop",
        loop,
    ]
    backends = BackendMeter(admin_url, database_url).start()
    simulator_cpu = CpuMeter([elsa.pid]).start()
    load = MachineLoad.start()
    try:
        completed = subprocess.run(
            command,
            env=child_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        backends.stop()
        raise SyncTimeout(f"the sync did not finish within {timeout:.0f} s") from None
    simulator_cpu.stop()
    backends.stop()
    machine_busy = load.busy_cpu_seconds()
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"sync worker failed ({completed.returncode}):\n{completed.stdout[-2000:]}"
            f"\n{completed.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["simulator_cpu_s"] = simulator_cpu.seconds
    result["postgres_cpu_s"] = backends.seconds
    result["postgres_sessions"] = backends.sessions
    result["postgres_backends"] = backends.backends_seen
    result["machine_busy_cpu_s"] = machine_busy
    result["wall_s"] = simulator_cpu.elapsed
    ours = result["worker_total_cpu_s"] + result["simulator_cpu_s"] + result["postgres_cpu_s"]
    # Everything else the machine did meanwhile (other processes).
    result["other_cpu_s"] = max(0.0, machine_busy - ours)
    return result


# -- the old protocol, replayed --------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection (the stdlib client: the least client overhead,
    so the baseline is not slowed down by the benchmark's own Python)."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
        self._headers = headers
        self.requests = 0

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        payload = orjson.dumps(body) if body is not None else None
        headers = dict(self._headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        self._conn.request(method, path, body=payload, headers=headers)
        response = self._conn.getresponse()
        data = response.read()
        self.requests += 1
        return response.status, data

    def close(self) -> None:
        self._conn.close()


def _epoch_ms(iso: str | None) -> int:
    return ElsaTimestamp.parse(iso).epoch_ms if iso else int(time.time() * 1000)


def replay_old_protocol(tamma_url: str, elsa_url: str, sample: int) -> dict[str, Any]:
    """The .NET WorkflowSyncService's cycle, request for request (§4.4), with its zero-based
    paging bug fixed (otherwise it reads nothing) and a loop over pages (otherwise it reads
    100 rows): definitions POSTed one by one, instances PUT, then POSTed on 404."""
    elsa = Connection(
        elsa_url, {"Accept": "application/json", "Authorization": f"ApiKey {ELSA_API_KEY}"}
    )
    tamma = Connection(tamma_url, {"Accept": "application/json"})
    statuses: dict[str, int] = {}

    def count(status: int) -> None:
        statuses[str(status)] = statuses.get(str(status), 0) + 1

    started = time.perf_counter()
    status, data = elsa.call(
        "GET", f"/elsa/api/workflow-definitions?page=0&pageSize={OLD_PAGE_SIZE}"
    )
    assert status == 200, data[:200]
    definitions = 0
    for item in orjson.loads(data)["items"]:
        status, _ = tamma.call(
            "POST",
            "/api/workflows/definitions",
            {
                "id": item.get("definitionId") or item["id"],
                "name": item.get("name") or "Unnamed",
                "version": item.get("version", 0),
                "description": item.get("description") or "",
                "activities": item.get("activities") or [],
                "syncedAt": int(time.time() * 1000),
            },
        )
        count(status)
        definitions += 1
    instances = 0
    page = 0
    while instances < sample:
        status, data = elsa.call(
            "GET", f"/elsa/api/workflow-instances?page={page}&pageSize={OLD_PAGE_SIZE}"
        )
        assert status == 200, data[:200]
        items = orjson.loads(data)["items"]
        if not items:
            break
        for item in items[: sample - instances]:
            body: dict[str, Any] = {
                "id": item["id"],
                "definitionId": item.get("definitionId") or "",
                "status": item.get("status") or "Unknown",
                "variables": item.get("variables") or {},
                "createdAt": _epoch_ms(item.get("createdAt")),
                "updatedAt": int(time.time() * 1000),
            }
            if item.get("currentActivity") is not None:
                body["currentActivity"] = item["currentActivity"]
            status, _ = tamma.call("PUT", f"/api/workflows/instances/{item['id']}", body)
            count(status)
            if status == 404:
                status, _ = tamma.call("POST", "/api/workflows/instances", body)
                count(status)
            instances += 1
        page += 1
    elapsed = time.perf_counter() - started
    requests = {"elsa": elsa.requests, "tamma_sync": tamma.requests}
    elsa.close()
    tamma.close()
    return {
        "elapsed_s": elapsed,
        "instances": instances,
        "definitions": definitions,
        "requests": requests,
        "statuses": statuses,
    }


def run_old_protocol(
    database_url: str, elsa: Child, sample: int, admin_url: str | None, workdir: Path
) -> dict[str, Any]:
    with tamma_sync_server(database_url, workdir) as server:
        backends = BackendMeter(admin_url, database_url).start()
        meters = {
            "server": CpuMeter([server.pid]).start(),
            "simulator": CpuMeter([elsa.pid]).start(),
        }
        client_before = time.process_time()
        load = MachineLoad.start()
        result = replay_old_protocol(server.base_url, elsa.base_url, sample)
        result["client_cpu_s"] = time.process_time() - client_before
        result["machine_busy_cpu_s"] = load.busy_cpu_seconds()
        for name, meter in meters.items():
            result[f"{name}_cpu_s"] = meter.stop()
        result["postgres_cpu_s"] = backends.stop()
        result["postgres_sessions"] = backends.sessions
        result["postgres_backends"] = backends.backends_seen
        conn = Connection(server.base_url, {"Accept": "application/json"})
        _, data = conn.call("GET", "/api/workflows/instances?pageSize=1")
        conn.close()
        result["mirrored"] = orjson.loads(data)["total"]
    ours = sum(result[f"{name}_cpu_s"] for name in ("client", "server", "simulator", "postgres"))
    result["other_cpu_s"] = max(0.0, result["machine_busy_cpu_s"] - ours)
    return result


# -- orchestration ---------------------------------------------------------------------------


@contextmanager
def _database(kind: str, admin_url: str, workdir: Path, label: str) -> Iterator[str]:
    if kind == "sqlite":
        path = workdir / f"{label}.db"
        yield f"sqlite:///{path}"
        for leftover in workdir.glob(f"{label}.db*"):
            leftover.unlink()
    else:
        with temp_postgres_database(admin_url, label) as url:
            yield url


def _new_sync_on_fresh_database(
    kind: str, admin_url: str, workdir: Path, policy: str, elsa: Child, args: argparse.Namespace
) -> dict[str, Any]:
    code_checkpoint(f"{kind} new sync details={policy}")
    with _database(kind, admin_url, workdir, f"new_{policy}") as url:
        return run_new_sync(
            url,
            elsa,
            policy,
            args.page_size,
            args.loop,
            admin_url if kind == "postgresql" else None,
            args.timeout,
        )


def _old_protocol_on_fresh_database(
    kind: str, admin_url: str, workdir: Path, elsa: Child, args: argparse.Namespace
) -> dict[str, Any]:
    code_checkpoint(f"{kind} old protocol")
    with _database(kind, admin_url, workdir, "old") as url:
        return run_old_protocol(
            url,
            elsa,
            args.baseline_sample,
            admin_url if kind == "postgresql" else None,
            workdir,
        )


def _cpu_per_instance_us(result: dict[str, Any], instances: int, names: list[str]) -> float:
    total: float = sum(result[f"{name}_cpu_s"] for name in names)
    return total / instances * 1e6


NEW_CPU = ["worker", "simulator", "postgres"]
OLD_CPU = ["client", "server", "simulator", "postgres"]


def _describe_new(result: dict[str, Any], instances: int) -> list[str]:
    rate = instances / result["elapsed_s"]
    return [
        f"{fmt(result['elapsed_s'], 2)} s",
        f"**{fmt(rate, 0)}**",
        f"{fmt(_cpu_per_instance_us(result, instances, NEW_CPU), 0)} µs",
        f"{fmt(result['instances_phase_s'], 2)} s / {fmt(result['after_instances_s'], 2)} s",
        f"{result['details_fetched']:,}",
        f"{fmt(result['worker_cpu_s'], 1)} s",
        f"{fmt(result['simulator_cpu_s'], 1)} s",
        f"{fmt(result['postgres_cpu_s'], 1)} s" if result["postgres_cpu_s"] else NONE,
        f"{result['memory_kib']['VmHWM'] / 1024:,.0f} MiB",
        f"{fmt(result['other_cpu_s'], 1)} s",
    ]


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync_initial",
        description="Initial mirror of N ELSA instances: SyncService+StoreSink vs the old "
        ".NET PUT-then-POST protocol.",
    )
    parser.add_argument("--instances", type=int, default=100_000, help="ELSA instances (100000)")
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=5_000,
        help="instances replayed with the old protocol (default 5000)",
    )
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument(
        "--details", default="none,active", help="details policies to run: none,active,all"
    )
    parser.add_argument("--page-size", type=int, default=1_000, help="SyncOptions.page_size")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="give up on one sync run after this (900 s)"
    )
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of the sync worker (uvloop: what `tamma-sync serve` runs on)",
    )
    common_arguments(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--elsa-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return

    databases = [kind.strip() for kind in args.databases.split(",") if kind.strip()]
    policies = [policy.strip() for policy in args.details.split(",") if policy.strip()]
    admin_url = postgres_admin_url(args.postgres_url)
    uses_postgres = "postgresql" in databases
    report = Report(
        f"Initial sync: {args.instances:,} instances",
        MODULE,
        machine_description(admin_url if uses_postgres else None),
    )
    busy_before = wait_for_quiet(args.quiet_wait)
    print(f"machine busy before start: {busy_before:.2f} cores", file=sys.stderr)
    raw: dict[str, Any] = {"args": vars(args), "new": {}, "old": {}}

    with tempfile.TemporaryDirectory(prefix="tamma-bench-") as tmp:
        workdir = Path(tmp)
        with elsa_simulator(args.instances, workdir=workdir, ending_now=True) as elsa:
            for kind in databases:
                for policy in policies:
                    progress(f"[{kind}] new sync, details={policy} ...")
                    result = retrying(
                        f"{kind} new sync details={policy}",
                        functools.partial(
                            _new_sync_on_fresh_database,
                            kind,
                            admin_url,
                            workdir,
                            policy,
                            elsa,
                            args,
                        ),
                        admin_url if kind == "postgresql" else None,
                    )
                    raw["new"][f"{kind}/{policy}"] = result
                    progress(
                        f"  {result['elapsed_s']:.2f}s, "
                        f"{args.instances / result['elapsed_s']:,.0f} instances/s, "
                        f"{result['live_instances']:,} mirrored, error={result['error']}"
                    )
                progress(f"[{kind}] old protocol on a {args.baseline_sample:,}-instance sample ...")
                old = retrying(
                    f"{kind} old protocol",
                    functools.partial(
                        _old_protocol_on_fresh_database, kind, admin_url, workdir, elsa, args
                    ),
                    admin_url if kind == "postgresql" else None,
                )
                raw["old"][kind] = old
                progress(
                    f"  {old['elapsed_s']:.2f}s, "
                    f"{old['instances'] / old['elapsed_s']:,.0f} instances/s, "
                    f"{old['mirrored']:,} mirrored"
                )
    report.raw = raw
    _write_report(report, args, databases, policies, busy_before)
    report.publish(record=args.record)


def _write_report(
    report: Report,
    args: argparse.Namespace,
    databases: list[str],
    policies: list[str],
    busy_before: float,
) -> None:
    raw = report.raw
    report.add(
        f"Setup: ELSA simulator (seed 1, 12 definitions, {args.instances:,} instances: 4 % "
        "Pending, 4 % Executing, 22 % Suspended, 55 % Finished, 5 % Cancelled, 10 % Faulted, "
        "created over the 30 days before the run, so the trends count the last days as a live "
        "ELSA's) served by uvicorn on uvloop in its own process. New sync: `SyncService` + "
        f"`StoreSink` in a fresh worker process ({args.loop} loop), `SyncOptions(page_size="
        f"{args.page_size}, details=…)` otherwise default (details concurrency 8), one "
        "`run_cycle()` from an empty mirror, timed from its start to its end (definitions, "
        "the instance walk, and anything else a first cycle does, such as a reconciliation "
        "listing); "
        "schema migration is not timed. Baseline: the old protocol replayed against "
        "`tamma-sync serve` (default settings, child process) on a fresh database of the same "
        f"kind, on the first {args.baseline_sample:,} instances, sequentially, one keep-alive "
        f"connection, ELSA read {OLD_PAGE_SIZE} rows per request. Machine busy before start: "
        f"{busy_before:.2f} cores (other processes)."
    )
    rows: list[list[str]] = []
    targets: list[list[str]] = []
    for kind in databases:
        old = raw["old"][kind]
        old_rate = old["instances"] / old["elapsed_s"]
        for policy in policies:
            new = raw["new"][f"{kind}/{policy}"]
            rate = args.instances / new["elapsed_s"]
            rows.append([kind, f"new, details={policy}", *_describe_new(new, args.instances)])
            met_rate = "met" if rate >= TARGET_RATE else "**missed**"
            met_ratio = "met" if rate / old_rate >= TARGET_RATIO else "**missed**"
            cpu_new = _cpu_per_instance_us(new, args.instances, NEW_CPU)
            cpu_old = _cpu_per_instance_us(old, old["instances"], OLD_CPU)
            targets.append(
                [
                    kind,
                    f"details={policy}",
                    f"{fmt(rate, 0)} /s ({rate / TARGET_RATE:.2f}{TIMES} the target) — {met_rate}",
                    f"{ratio(rate, old_rate)} — {met_ratio}",
                    ratio(cpu_old, cpu_new),
                ]
            )
        rows.append(
            [
                kind,
                f"old PUT→POST ({old['instances']:,} sample)",
                f"{fmt(old['elapsed_s'], 2)} s",
                f"**{fmt(old_rate, 0)}**",
                f"{fmt(_cpu_per_instance_us(old, old['instances'], OLD_CPU), 0)} µs",
                NONE,
                NONE,
                f"{fmt(old['client_cpu_s'], 1)} s (client)",
                f"{fmt(old['simulator_cpu_s'], 1)} s",
                f"{fmt(old['postgres_cpu_s'], 1)} s" if old["postgres_cpu_s"] else NONE,
                f"server: {fmt(old['server_cpu_s'], 1)} s CPU",
                f"{fmt(old['other_cpu_s'], 1)} s",
            ]
        )
    report.add(
        Table(
            "Throughput",
            [
                "database",
                "run",
                "cycle time",
                "instances/s",
                "CPU per instance",
                "instances / rest of cycle",
                "details fetched",
                "sync CPU",
                "simulator CPU",
                "PostgreSQL CPU",
                "peak RSS (sync)",
                "other CPU",
            ],
            rows,
        )
    )
    report.add(
        "`instances / rest of cycle`: time until the last instance page was written, then the "
        "rest (a reconciliation listing, when the cycle runs one). `CPU per instance`: CPU "
        "of every process involved (sync worker or client + server, simulator, PostgreSQL "
        "backends) per instance. CPU "
        "columns are CPU seconds during the run; "
        "`other CPU` is what the rest of the machine used meanwhile (other processes, process "
        "start-up): near 0 means the figures were not disturbed."
    )
    report.add(
        Table(
            f"Targets (≥ 20,000 instances/s; ≥ 20{TIMES} the old protocol, same database kind)",
            [
                "database",
                "run",
                "instances/s vs 20,000",
                "instances/s vs old protocol",
                "CPU per instance, old / new",
            ],
            targets,
        )
    )
    report.add(
        "The last column compares the CPU spent per instance by every process involved "
        "(sync or client and server, simulator, PostgreSQL backends): it is what the speed-up "
        "would be on a machine with a free core per process, and it is much less disturbed by "
        "other load than wall-clock rates."
    )
    checks = []
    for key, new in raw["new"].items():
        checks.append(
            f"{key}: {new['live_instances']:,} live instances, {new['change_rows']:,} change "
            f"rows, created {new['created']:,}, error {new['error']!r}, "
            f"{new.get('postgres_backends', 0):,} PostgreSQL backends seen"
        )
    for kind, old in raw["old"].items():
        checks.append(
            f"{kind}/old: {old['mirrored']:,} mirrored, HTTP statuses {old['statuses']}, "
            f"requests {old['requests']}, "
            f"{old.get('postgres_backends', 0):,} PostgreSQL backends seen"
        )
    report.add("Checks:\n\n" + "\n".join(f"- {line}" for line in checks))


if __name__ == "__main__":
    main()
