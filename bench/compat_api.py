"""The original API's own protocol and pages, on tamma-sync against the framework's floor.

For each server — `tamma-sync serve` on SQLite and on PostgreSQL, the same routes served from
memory (`bench/_memory_server.py`: FastAPI on uvicorn without a database, the floor of what
tamma-sync is built on) and, with `--other-url`, another implementation of the API (the
original Fastify server, say) — one after another on this machine:

1. **The .NET protocol, sequentially**, request for request as the .NET `WorkflowSyncService`
   sends it: 100 definitions POSTed, then for each of `--protocol-instances` new instances
   `PUT /api/workflows/instances/{id}` (404) and `POST /api/workflows/instances` (new
   instances/s); then a later cycle, a `PUT` of each with a new `updatedAt` and, for one in
   ten, a new status (updates/s). Then the stored instances are read back page by page:
   each must be there with the status last sent. For each phase, where the time went: the
   wall time per instance and the CPU of the client, the server and (PostgreSQL) its
   backends: one request at a time, they take turns.
2. **Pages and the summary at concurrency 16**, once the server holds `--instances`
   instances (the rest loaded by `POST /api/sync/batch` on tamma-sync, by concurrent POSTs
   elsewhere: not timed): `page=N&pageSize=50` at several depths, in rounds that read each
   depth once for a share of `--duration`, in an order turned by one each round (a
   server's or a host's pace drifts and stalls over a run: so it reaches every depth
   alike), the first page filtered by `definitionId`, and `/api/dashboard/summary`; then
   the total is read back.

`python -m bench.compat_api [--databases sqlite,postgresql] [--other-url URL [--other-pid PID]]
[--record]`
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench._common import (
    TIMES,
    BackendMeter,
    CpuMeter,
    Report,
    Table,
    common_arguments,
    fmt,
    fresh_database,
    start_run,
)
from bench._scale_common import (
    MEASUREMENT_HEADER,
    Measurement,
    Scenario,
    measurement_row,
    run_scenario,
)
from bench._servers import memory_server, tamma_sync_server
from bench.sync_initial import Connection

MODULE = "bench.compat_api"
DEFINITIONS = 100
PAGE_SIZE = 50
#: Targets on this machine kind (2 cores).
NEW_TARGET = 600.0
UPDATE_TARGET = 1_100.0
FIRST_PAGE_TARGET = 850.0
#: Rounds of page reads: each depth is read once a round, for this share of `--duration`.
PAGE_ROUNDS = 4
BATCH = 1_000
LOADERS = 8
STATUSES = ("Running", "Finished")
SUMMARY = "/api/dashboard/summary"


@dataclass(frozen=True)
class Server:
    """One implementation of the API, serving on loopback."""

    name: str
    base_url: str
    pids: list[int]
    """Its processes, for their CPU (for `--other-url`, `--other-pid` if given)."""
    batch_load: bool
    """Whether it takes `POST /api/sync/batch` (tamma-sync) for the untimed load."""
    postgres: tuple[str, str] | None = None
    """The admin URL and the URL of the PostgreSQL database it serves, for the CPU of the
    backends serving it."""

    @property
    def port(self) -> int:
        return urlsplit(self.base_url).port or 80


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _definition(number: int) -> dict[str, Any]:
    return {
        "id": f"def-{number:03d}",
        "name": f"Definition {number}",
        "version": 1,
        "description": "",
        "activities": [],
    }


def _instance(number: int, created_at: int, status: str = "Running") -> dict[str, Any]:
    """The body the .NET sync sends for an ELSA instance (§4.4 of the contract)."""
    return {
        "id": f"inst-{number:07d}",
        "definitionId": f"def-{number % DEFINITIONS:03d}",
        "status": status,
        "variables": {},
        "createdAt": created_at + number,
        "updatedAt": int(time.time() * 1000),
    }


class DotnetClient:
    """The .NET sync service's requests, one at a time on one keep-alive connection, as it
    sends them; each status counted, a 5xx an error."""

    def __init__(self, base_url: str) -> None:
        self.api = Connection(base_url, {"Accept": "application/json"})
        self.statuses: dict[str, int] = {}

    def call(self, method: str, path: str, body: dict[str, Any]) -> int:
        status, data = self.api.call(method, path, body)
        self.statuses[f"{method} {status}"] = self.statuses.get(f"{method} {status}", 0) + 1
        if status >= 500:
            raise RuntimeError(f"{method} {path}: {status} {data[:200]!r}")
        return status

    def definitions(self) -> None:
        for number in range(DEFINITIONS):
            self.call("POST", "/api/workflows/definitions", _definition(number))

    def new_instances(self, numbers: range, created_at: int) -> None:
        """Each instance PUT, then POSTed when the PUT finds none (404)."""
        for number in numbers:
            body = _instance(number, created_at)
            if self.call("PUT", f"/api/workflows/instances/{body['id']}", body) == 404:
                self.call("POST", "/api/workflows/instances", body)

    def missing(self, numbers: range) -> None:
        """A PUT of each of instances the server does not hold: each must be a 404."""
        for number in numbers:
            body = _instance(number, 0)
            status = self.call("PUT", f"/api/workflows/instances/{body['id']}", body)
            assert status == 404, f"PUT of instance {body['id']}, never created: {status}"

    def later_cycle(self, numbers: range, created_at: int) -> dict[str, str]:
        """Each instance PUT again with a new `updatedAt`, one in ten with a new status;
        the status each was last sent with."""
        sent = {}
        for number in numbers:
            body = _instance(number, created_at, STATUSES[number % 10 == 0])
            self.call("PUT", f"/api/workflows/instances/{body['id']}", body)
            sent[body["id"]] = body["status"]
        return sent

    def stored_statuses(self) -> dict[str, str]:
        """Every stored instance's status, read page by page (200 a page)."""
        found: dict[str, str] = {}
        page = 1
        while True:
            status, data = self.api.call(
                "GET", f"/api/workflows/instances?page={page}&pageSize=200"
            )
            assert status == 200, data[:200]
            rows = orjson.loads(data)["data"]
            found.update((row["id"], row["status"]) for row in rows)
            if len(rows) < 200:
                return found
            page += 1

    def close(self) -> None:
        self.api.close()


class Phase:
    """One phase of the replay, from its start: its wall time and the CPU of this client's
    thread, of the server's processes and of the PostgreSQL backends serving it."""

    def __init__(self, server: Server) -> None:
        self._backends = BackendMeter(*server.postgres).start() if server.postgres else None
        self._server = CpuMeter(server.pids).start()
        self._has_pids = bool(server.pids)
        self._client = time.thread_time()  # without the thread sampling the backends
        self._started = time.perf_counter()

    def stop(self, name: str, count: int) -> dict[str, Any]:
        """The phase's figures, named `<name>_…`, each CPU time per instance of `count`."""
        elapsed = time.perf_counter() - self._started
        client = time.thread_time() - self._client
        server = self._server.stop()
        backends = self._backends.stop() if self._backends is not None else None
        per_instance = 1e6 / count
        return {
            f"{name}_s": elapsed,
            f"{name}_rate": count / elapsed,
            f"{name}_wall_us": elapsed * per_instance,
            f"{name}_client_cpu_us": client * per_instance,
            # The server process's own CPU; PostgreSQL's is its backends'.
            f"{name}_cpu_us": server * per_instance if self._has_pids else None,
            f"{name}_postgres_cpu_us": None if backends is None else backends * per_instance,
        }


def replay_protocol(server: Server, count: int, created_at: int) -> dict[str, Any]:
    """Definitions, `count` new instances (PUT 404 → POST), then a later cycle of PUTs."""
    client = DotnetClient(server.base_url)
    client.definitions()
    phase = Phase(server)
    client.new_instances(range(count), created_at)
    new = phase.stop("new", count)
    phase = Phase(server)
    expected = client.later_cycle(range(count), created_at)
    update = phase.stop("update", count)
    stored = client.stored_statuses()
    client.close()
    lost = sum(stored.get(instance_id) != status for instance_id, status in expected.items())
    return {
        "instances": count,
        **new,
        **update,
        "statuses": client.statuses,
        "stored": len(stored),
        "wrong_or_missing": lost,
    }


def load(server: Server, first: int, last: int, created_at: int) -> None:
    """Instances `first`…`last - 1`, as fast as the server takes them (not timed)."""
    numbers = range(first, last)
    if server.batch_load:
        api = Connection(server.base_url, {"Accept": "application/json"})
        for start in range(first, last, BATCH):
            batch = {
                "sourceId": "bench",
                "instances": [_instance(n, created_at) for n in numbers[start - first :][:BATCH]],
            }
            status, data = api.call("POST", "/api/sync/batch", batch)
            assert status == 200, data[:300]
        api.close()
        return

    def post_share(share: int) -> None:
        api = Connection(server.base_url, {"Accept": "application/json"})
        for number in numbers[share::LOADERS]:
            status, data = api.call(
                "POST", "/api/workflows/instances", _instance(number, created_at)
            )
            assert status == 201, data[:300]
        api.close()

    with ThreadPoolExecutor(LOADERS) as pool:
        list(pool.map(post_share, range(LOADERS)))


def page_depths(instances: int) -> list[int]:
    """Page numbers from the first to the last full page, at about 10 %, 50 % and 100 %."""
    last = max(1, instances // PAGE_SIZE)
    return sorted({1, max(1, last // 10), max(1, last // 2), last})


def page_scenarios(instances: int, duration: float) -> list[Scenario]:
    """One round of page reads, `duration` seconds at each depth."""
    return [
        Scenario(
            f"page-{page}",
            f"`page={page}` (offset {(page - 1) * PAGE_SIZE:,})",
            [f"/api/workflows/instances?page={page}&pageSize={PAGE_SIZE}"],
            16,
            duration,
            warmup=0.5,
        )
        for page in page_depths(instances)
    ]


def page_reads(server: Server, instances: int, duration: float) -> dict[str, Measurement]:
    """Each depth's reads over `PAGE_ROUNDS` rounds, `duration` seconds in all. The order
    of the depths turns by one each round, so that each takes each place in a round once
    and the order is no part of the comparison (read always first, the first page was
    ahead of the deepest in 16 of 18 runs even on the memory server, where both cost the
    same)."""
    scenarios = page_scenarios(instances, duration / PAGE_ROUNDS)
    slices: dict[str, list[Measurement]] = {}
    for round_number in range(PAGE_ROUNDS):
        progress(f"[{server.name}] pages, round {round_number + 1} of {PAGE_ROUNDS} ...")
        turn = round_number % len(scenarios)
        for scenario in scenarios[turn:] + scenarios[:turn]:
            measured = run_scenario(scenario, server.pids, server.port)
            slices.setdefault(scenario.key, []).append(measured)
    return {key: Measurement.merged(parts) for key, parts in slices.items()}


def other_read_scenarios(duration: float) -> list[Scenario]:
    """The first page by definition and the summary."""
    by_definition = [
        f"/api/workflows/instances?page=1&pageSize={PAGE_SIZE}&definitionId=def-{n:03d}"
        for n in random.Random(1).sample(range(DEFINITIONS), 20)
    ]
    return [
        Scenario("definition", "`definitionId`, first page", by_definition, 16, duration, 1.0),
        Scenario("summary", "`/api/dashboard/summary`", [SUMMARY], 16, duration, 1.0),
    ]


def measure(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    created_at = int(time.time() * 1000) - 86_400_000
    progress(f"[{server.name}] .NET protocol, {args.protocol_instances:,} instances ...")
    protocol = replay_protocol(server, args.protocol_instances, created_at)
    progress(
        f"  {protocol['new_rate']:,.0f} new/s, {protocol['update_rate']:,.0f} updates/s, "
        f"{protocol['wrong_or_missing']} wrong or missing"
    )
    progress(f"[{server.name}] loading to {args.instances:,} instances ...")
    load(server, args.protocol_instances, args.instances, created_at)
    reads = page_reads(server, args.instances, args.duration)
    for scenario in other_read_scenarios(args.duration):
        progress(f"[{server.name}] {scenario.label} ...")
        reads[scenario.key] = run_scenario(scenario, server.pids, server.port)
    api = Connection(server.base_url, {"Accept": "application/json"})
    _, data = api.call("GET", "/api/workflows/instances?pageSize=1")
    api.close()
    return {"protocol": protocol, "reads": reads, "total_after": orjson.loads(data)["total"]}


@contextmanager
def started(
    kind: str, admin_url: str, workdir: Path, launcher: Sequence[str] = ()
) -> Iterator[Server]:
    """The routes in memory (`kind` "memory"), or `tamma-sync serve` on a fresh database
    of `kind` ("sqlite", "postgresql"); run by `launcher` (a command) if given."""
    if kind == "memory":
        with memory_server(workdir, launcher) as child:
            yield Server("in memory", child.base_url, [child.pid], batch_load=False)
        return
    with (
        fresh_database(kind, admin_url, workdir, f"compat-{kind}") as url,
        tamma_sync_server(url, workdir / kind, launcher=launcher) as child,
    ):
        postgres = (admin_url, url) if kind == "postgresql" else None
        yield Server(
            f"tamma-sync {kind}", child.base_url, [child.pid], batch_load=True, postgres=postgres
        )


def servers(
    args: argparse.Namespace, admin_url: str, workdir: Path
) -> Iterator[tuple[str, Callable[[], AbstractContextManager[Server]]]]:
    """Each server to measure, started when its turn comes."""

    @contextmanager
    def other() -> Iterator[Server]:
        pids = [args.other_pid] if args.other_pid else []
        yield Server("other", args.other_url.rstrip("/"), pids, batch_load=False)

    yield "in memory", functools.partial(started, "memory", admin_url, workdir)
    for kind in args.databases.split(","):
        yield f"tamma-sync {kind}", functools.partial(started, kind, admin_url, workdir)
    if args.other_url:
        yield "other", other


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--instances", type=int, default=100_000, help="for the reads (100000)")
    parser.add_argument(
        "--protocol-instances", type=int, default=3_000, help="replayed sequentially (3000)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per read (5)")
    parser.add_argument(
        "--other-url", help="another implementation of the API to measure, e.g. the original"
    )
    parser.add_argument(
        "--other-pid", type=int, help="the process serving --other-url, for its CPU (optional)"
    )
    common_arguments(parser)
    args = parser.parse_args(argv)
    report, admin_url, _ = start_run(
        "The original API's protocol and pages", MODULE, args, args.databases.split(",")
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tamma-bench-") as tmp:
        for name, start in servers(args, admin_url, Path(tmp)):
            with start() as server:
                results[name] = measure(server, args)
    report.raw = {
        "args": vars(args),
        "results": {
            name: {**result, "reads": {k: m.as_json() for k, m in result["reads"].items()}}
            for name, result in results.items()
        },
    }
    write_report(report, args, results)
    report.publish(record=args.record)


def write_report(report: Report, args: argparse.Namespace, results: dict[str, Any]) -> None:
    baselines = [results["in memory"], *([results["other"]] if "other" in results else [])]
    versus = ["vs memory", *(["vs other"] if len(baselines) > 1 else [])]
    report.add(
        f"Each server on its own, one after another: {DEFINITIONS} definitions; the .NET "
        f"protocol replayed sequentially on {args.protocol_instances:,} new instances (PUT → "
        "404 → POST), then a later cycle of PUTs (a new `updatedAt` each, a new status for one "
        f"in ten); then {args.instances:,} instances in all and reads at concurrency 16 "
        f"({args.duration:g} s each, closed loop, one client process; the pages in "
        f"{PAGE_ROUNDS} rounds, each depth read once a round). Baselines: the same routes in "
        "memory on the same framework (`bench/_memory_server.py`)"
        + (f" and the other implementation at {args.other_url}." if args.other_url else ".")
    )
    rows = []
    for name, result in results.items():
        p = result["protocol"]
        rows.append(
            [
                name,
                f"{fmt(p['new_rate'], 0)}/s",
                *(_ratio(p["new_rate"], base["protocol"]["new_rate"]) for base in baselines),
                f"{fmt(p['update_rate'], 0)}/s",
                *(_ratio(p["update_rate"], base["protocol"]["update_rate"]) for base in baselines),
                f"{p['stored']:,} stored, {p['wrong_or_missing']} wrong or missing",
            ]
        )
    report.add(
        Table(
            ".NET protocol, sequential",
            [
                "server",
                "new instances",
                *versus,
                "later cycle (PUT)",
                *versus,
                "check",
            ],
            rows,
        )
    )
    report.add(
        "One request at a time, the client, the server and PostgreSQL take turns: an "
        "instance's wall time is about the sum of their CPU, less what two cores overlap "
        "(the server's CPU is its process's own; PostgreSQL's, its backends')."
    )
    parts = ["wall", "client CPU", "server CPU", "PostgreSQL CPU"]
    report.add(
        Table(
            ".NET protocol, per instance: where the time goes",
            ["server", *(f"new: {part}" for part in parts), *(f"PUT: {part}" for part in parts)],
            [
                [
                    name,
                    *_time_split(result["protocol"], "new"),
                    *_time_split(result["protocol"], "update"),
                ]
                for name, result in results.items()
            ],
        )
    )
    rows = []
    for name, result in results.items():
        for key, m in result["reads"].items():
            ratios = (_ratio(m.rate, base["reads"][key].rate) for base in baselines)
            rows.append([name, *measurement_row(m)[:7], *ratios])
    report.add(
        Table(
            "Reads at concurrency 16",
            ["server", *MEASUREMENT_HEADER[:7], *(f"throughput {text}" for text in versus)],
            rows,
        )
    )
    report.add(
        "Totals read back after the reads: "
        + ", ".join(f"{name} {result['total_after']:,}" for name, result in results.items())
    )
    last_page = f"page-{page_depths(args.instances)[-1]}"
    for name, result in results.items():
        if name.startswith("tamma-sync"):
            checks = _checks(result, results["in memory"], args.instances, last_page)
            if "other" in results:
                checks += _checks_against(result, results["other"], last_page)
            report.verdict(
                f"- **{name}**: "
                + "; ".join(f"{text}: {'met' if ok else '**missed**'}" for text, ok in checks)
            )


def _time_split(protocol: dict[str, Any], phase: str) -> list[str]:
    """A phase's wall time and CPU per instance (`Phase.stop`'s figures)."""
    names = ("wall_us", "client_cpu_us", "cpu_us", "postgres_cpu_us")
    return [_micros(protocol.get(f"{phase}_{name}")) for name in names]


def _micros(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} µs"


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}{TIMES}" if base else "—"


def _checks(
    result: dict[str, Any], floor: dict[str, Any], instances: int, last_page: str
) -> list[tuple[str, bool]]:
    """The targets on this machine kind (`NEW_TARGET`…), and the deep page against the
    first, told with the same ratio of the `floor` (the memory server: its pages all cost
    the same, so its ratio is the run's noise)."""
    p, reads = result["protocol"], result["reads"]
    floor_ratio = floor["reads"][last_page].rate / floor["reads"]["page-1"].rate
    deep = reads[last_page]
    first_rate, first_p99 = reads["page-1"].rate, reads["page-1"].p("p99")
    return [
        (
            f"new instances {fmt(p['new_rate'], 0)}/s ≥ {NEW_TARGET:,.0f}",
            p["new_rate"] >= NEW_TARGET,
        ),
        (
            f"later cycle {fmt(p['update_rate'], 0)}/s ≥ {UPDATE_TARGET:,.0f}",
            p["update_rate"] >= UPDATE_TARGET,
        ),
        (
            f"first page {fmt(first_rate, 0)} req/s ≥ {FIRST_PAGE_TARGET:,.0f}",
            first_rate >= FIRST_PAGE_TARGET,
        ),
        (
            f"deepest page {fmt(deep.rate, 0)} req/s ≥ first page's ({fmt(first_rate, 0)}; "
            f"{_cost_and_spread(deep, reads['page-1'])}; the floor's own {floor_ratio:.2f}{TIMES})",
            deep.rate >= first_rate,
        ),
        (
            f"deepest page p99 {deep.p('p99'):.1f} ms ≤ 2{TIMES} the first's ({first_p99:.1f} ms)",
            deep.p("p99") <= 2 * first_p99,
        ),
        (
            "nothing lost",
            p["wrong_or_missing"] == 0 and result["total_after"] == instances,
        ),
    ]


def _checks_against(
    result: dict[str, Any], other: dict[str, Any], last_page: str
) -> list[tuple[str, bool]]:
    """At least as fast as the other implementation, measured in the same run."""
    figures = [
        ("new instances", result["protocol"]["new_rate"], other["protocol"]["new_rate"]),
        ("later cycle", result["protocol"]["update_rate"], other["protocol"]["update_rate"]),
        *(
            (label, result["reads"][key].rate, other["reads"][key].rate)
            for label, key in [
                ("first page", "page-1"),
                ("deepest page", last_page),
                ("`definitionId` page", "definition"),
                ("summary", "summary"),
            ]
        ),
    ]
    return [
        (f"{label} {fmt(ours, 0)}/s ≥ the other's {fmt(theirs, 0)}/s", ours >= theirs)
        for label, ours, theirs in figures
    ]


def _cost_and_spread(deep: Measurement, first: Measurement) -> str:
    """The server's CPU per request of both, and the range of their throughput ratio
    round by round: where the costs are equal, the ratio is the run's noise."""
    ratios = [
        deep_rate / first_rate
        for deep_rate, first_rate in zip(
            deep.extra["slice_rates"], first.extra["slice_rates"], strict=True
        )
        if first_rate
    ]
    spread = f"{min(ratios):.2f} to {max(ratios):.2f}{TIMES}" if ratios else "none"
    return (
        f"server CPU {_cpu_per_request_us(deep):.0f} against {_cpu_per_request_us(first):.0f} "
        f"µs a request; rounds {spread}"
    )


def _cpu_per_request_us(m: Measurement) -> float:
    return m.server_cpu / m.requests * 1e6 if m.requests else 0.0


if __name__ == "__main__":
    main()
