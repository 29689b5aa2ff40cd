"""Store write → SSE frame latency, against the old design's once-a-second store poll.

Each scenario runs real `tamma-sync serve` child processes and writes through the API of
server A at a steady rate (`PUT /api/workflows/instances/{id}`, round-robin over a few
instances), while one per-instance SSE stream per instance listens on the subscriber
server: A itself (one process), or server B on the same PostgreSQL (two processes, woken by
LISTEN/NOTIFY). A write's latency runs from just before its HTTP request is sent to the
arrival at the client of the `event: state` frame that carries it.

Baseline, same writes, same run: the original stream's design — per subscriber, a timer
that reads the instance from the store every 1000 ms and emits when `updatedAt` grew —
emulated by one polling task per instance reading the same database directly through
tamma-sync's `Store`, each with a random phase. Its latency is measured the same way, to the
poll that first sees the write.

`python -m bench.feed_latency --help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench._common import (
    NONE,
    TIMES,
    BackendMeter,
    CpuMeter,
    MachineLoad,
    Report,
    Table,
    code_checkpoint,
    common_arguments,
    distribution_ms,
    fmt,
    fresh_database,
    machine_description,
    postgres_admin_url,
    retrying_async,
    wait_for_quiet,
)
from bench._servers import Child, tamma_sync_server
from bench._sse import SseStream
from tamma_sync.models import DEFAULT_TENANT_ID
from tamma_sync.settings import normalize_database_url
from tamma_sync.store import Store

MODULE = "bench.feed_latency"
TARGET_P99_MS = 50.0
INSTANCES_PATH = "/api/workflows/instances"
SCENARIOS = {
    "sqlite-1proc": ("sqlite", 1),
    "pg-1proc": ("postgresql", 1),
    "pg-2proc": ("postgresql", 2),
    "sqlite-2proc": ("sqlite", 2),
}
DEFAULT_SCENARIOS = "sqlite-1proc,pg-1proc,pg-2proc"
#: Other load (cores) above which a scenario's tail latencies are flagged as disturbed.
DISTURBED_CORES = 0.3
#: Extra time after the last write for late frames and the last polls.
SETTLE_SECONDS = 3.0


@dataclass
class Observations:
    """When each observer first saw each write, by write index."""

    started: dict[int, float] = field(default_factory=dict)
    write_rtt: dict[int, float] = field(default_factory=dict)
    sse: dict[int, float] = field(default_factory=dict)
    poll: dict[int, float] = field(default_factory=dict)
    by_instance: dict[str, list[int]] = field(default_factory=dict)
    unexpected_frames: int = 0
    expected: int = 0
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def seen(self, target: dict[int, float], instance_id: str, index: int, at: float) -> None:
        """Record `index` (and any earlier write to the instance it supersedes) at `at`."""
        for earlier in self.by_instance.get(instance_id, []):
            if earlier > index:
                break
            target.setdefault(earlier, at)
        if len(self.sse) >= self.expected and len(self.poll) >= self.expected:
            self.complete.set()

    def latencies(self, target: dict[int, float]) -> list[float]:
        return [target[i] - self.started[i] for i in self.started if i in target]


def _marker(index: int) -> str:
    return f"w{index}"


def _index(activity: Any) -> int | None:
    if isinstance(activity, str) and activity.startswith("w") and activity[1:].isdigit():
        return int(activity[1:])
    return None


async def _subscribe(
    server: Child, instance_id: str, obs: Observations, ready: asyncio.Event
) -> None:
    stream = await SseStream.open(server.base_url, f"{INSTANCES_PATH}/{instance_id}/events")
    try:
        async for frame in stream.frames():
            if frame.event != "state" or frame.data is None:
                continue
            ready.set()  # the first frame: the instance as it is
            index = _index(orjson.loads(frame.data).get("currentActivity"))
            if index is None:
                continue
            if index not in obs.started:
                obs.unexpected_frames += 1  # a warm-up write
                continue
            obs.seen(obs.sse, instance_id, index, frame.arrived)
    finally:
        await stream.close()


async def _poll(
    store: Store, instance_id: str, obs: Observations, period: float, stop: asyncio.Event
) -> None:
    """The original stream's timer: every `period` s read the instance, emit if updatedAt
    grew (strictly, like the original)."""
    last_updated: int | None = None
    next_tick = time.perf_counter() + random.uniform(0, period)
    while not stop.is_set():
        await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        next_tick += period
        instance = await store.get_instance(DEFAULT_TENANT_ID, instance_id)
        seen_at = time.perf_counter()
        if instance is None:
            continue
        if last_updated is not None and instance.updated_at > last_updated:
            index = _index(instance.current_activity)
            if index is not None and index in obs.started:
                obs.seen(obs.poll, instance_id, index, seen_at)
        last_updated = instance.updated_at


async def _measure(
    writer_url: str,
    subscriber: Child,
    database_url: str,
    *,
    instances: int,
    writes: int,
    rate: float,
    poll_period: float,
    server_pids: list[int],
    admin_url: str | None,
) -> tuple[Observations, dict[str, float]]:
    obs = Observations(expected=writes)
    ids = [f"latency-{n:03d}" for n in range(instances)]
    for n in range(writes):
        obs.by_instance.setdefault(ids[n % instances], []).append(n)
    store = Store.from_url(normalize_database_url(database_url))
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=writer_url, timeout=10) as http:
        for instance_id in ids:
            response = await http.post(
                INSTANCES_PATH,
                json={"id": instance_id, "definitionId": "bench-latency", "status": "Running"},
            )
            response.raise_for_status()
        readiness = [asyncio.Event() for _ in ids]
        subscribers = [
            asyncio.create_task(_subscribe(subscriber, instance_id, obs, ready))
            for instance_id, ready in zip(ids, readiness, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readiness)), 30)
        pollers = [
            asyncio.create_task(_poll(store, instance_id, obs, poll_period, stop))
            for instance_id in ids
        ]
        # Warm-up: one unmeasured write per instance (connections, prepared statements).
        for n, instance_id in enumerate(ids):
            await http.put(f"{INSTANCES_PATH}/{instance_id}", json={"currentActivity": f"warm{n}"})
        await asyncio.sleep(max(1.0, poll_period * 1.5))
        backends = await asyncio.to_thread(BackendMeter(admin_url, database_url).start)
        servers = CpuMeter(server_pids).start()
        client_cpu = time.process_time()
        load = MachineLoad.start()
        began = time.perf_counter()
        for n in range(writes):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            instance_id = ids[n % instances]
            started = time.perf_counter()
            obs.started[n] = started
            response = await http.put(
                f"{INSTANCES_PATH}/{instance_id}", json={"currentActivity": _marker(n)}
            )
            obs.write_rtt[n] = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"write {n}: {response.status_code} {response.text}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(obs.complete.wait(), max(SETTLE_SECONDS, poll_period * 2 + 1))
        busy = load.busy_cores()
        servers.stop()
        client_seconds = time.process_time() - client_cpu
        await asyncio.to_thread(backends.stop)
        ours = (servers.seconds + backends.seconds + client_seconds) / servers.elapsed
        context = {
            "write_seconds": time.perf_counter() - began,
            "machine_busy_cores": busy,
            "our_cores": ours,
            "other_cores": max(0.0, busy - ours),
            "server_cpu_s": servers.seconds,
            "postgres_cpu_s": backends.seconds,
            "client_cpu_s": client_seconds,
        }
        stop.set()
        for task in [*subscribers, *pollers]:
            task.cancel()
        for task in [*subscribers, *pollers]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await store.close()
    return obs, context


@contextlib.contextmanager
def _servers(url: str, processes: int, workdir: Path) -> Iterator[tuple[Child, Child]]:
    with tamma_sync_server(url, workdir) as first:
        if processes == 1:
            yield first, first
            return
        with tamma_sync_server(url, workdir) as second:
            yield first, second


async def _run_scenario(
    name: str, args: argparse.Namespace, admin_url: str, workdir: Path
) -> dict[str, Any]:
    kind, processes = SCENARIOS[name]
    code_checkpoint(name)
    with (
        fresh_database(kind, admin_url, workdir, name.replace("-", "_")) as url,
        _servers(url, processes, workdir) as (writer, subscriber),
    ):
        obs, context = await _measure(
            writer.base_url,
            subscriber,
            url,
            instances=args.instances,
            writes=args.writes,
            rate=args.rate,
            poll_period=args.poll_period,
            server_pids=sorted({writer.pid, subscriber.pid}),
            admin_url=admin_url if kind == "postgresql" else None,
        )
    sse = obs.latencies(obs.sse)
    poll = obs.latencies(obs.poll)
    # How long after the PUT's response the frame came (negative: before it).
    after_put = [
        obs.sse[i] - (obs.started[i] + obs.write_rtt[i]) for i in obs.started if i in obs.sse
    ]
    return {
        "scenario": name,
        "database": kind,
        "processes": processes,
        "writes": len(obs.started),
        "sse_received": len(sse),
        "poll_received": len(poll),
        "sse_ms": distribution_ms(sse),
        "poll_ms": distribution_ms(poll),
        "write_rtt_ms": distribution_ms(list(obs.write_rtt.values())),
        "after_put_ms": distribution_ms(after_put),
        "unexpected_frames": obs.unexpected_frames,
        **context,
    }


def _write_report(report: Report, args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    report.add(
        f"Setup: per scenario a fresh database and real `tamma-sync serve` child processes "
        f"(default settings). {args.writes} measured writes at {args.rate:g}/s, round-robin "
        f"over {args.instances} instances (one write per instance every "
        f"{args.instances / args.rate:g} s), after one warm-up write per instance; each write "
        "is `PUT /api/workflows/instances/{id}` with a new `currentActivity`, on one "
        "keep-alive connection (httpx). One per-instance SSE stream per instance on the "
        "subscriber server (a raw-socket client that stamps each chunk on arrival). Latency: "
        "from just before the PUT is sent to the arrival of the `event: state` frame carrying "
        f"it. Baseline (same writes): one task per instance reading the instance from the "
        f"same database every {args.poll_period:g} s (random phase) and emitting when "
        "`updatedAt` grew, like the original stream's timer; latency to the poll that saw "
        "the write (its loopback write to a socket is not added). Client, servers and the "
        "database share the machine's 2 cores."
    )
    rows = []
    for result in results:
        sse, poll, rtt = result["sse_ms"], result["poll_ms"], result["write_rtt_ms"]
        rows.append(
            [
                result["scenario"],
                f"{result['sse_received']}/{result['writes']}",
                fmt(sse.get("p50", 0)),
                fmt(sse.get("p90", 0)),
                f"**{fmt(sse.get('p99', 0))}**",
                fmt(sse.get("max", 0)),
                f"{result['poll_received']}/{result['writes']}",
                fmt(poll.get("p50", 0)),
                fmt(poll.get("p99", 0)),
                fmt(poll.get("max", 0)),
                fmt(rtt.get("p50", 0)),
                fmt(rtt.get("p99", 0)),
                fmt(result["after_put_ms"].get("p50", 0)),
                fmt(result["after_put_ms"].get("p99", 0)),
                fmt(result["other_cores"], 2),
            ]
        )
    report.add(
        Table(
            "Latency (ms)",
            [
                "scenario",
                "SSE frames",
                "SSE p50",
                "SSE p90",
                "SSE p99",
                "SSE max",
                "poll seen",
                "poll p50",
                "poll p99",
                "poll max",
                "PUT p50",
                "PUT p99",
                "frame after PUT response p50",
                "p99",
                "other load (cores)",
            ],
            rows,
        )
    )
    report.add(
        "`PUT`: the write's own round trip (the store write and its commit are part of "
        "the SSE latency). `frame after PUT response`: SSE arrival minus the PUT response's "
        "arrival, i.e. what the feed adds once the write is acknowledged (negative: the frame "
        "came first). `other load`: CPU the rest of the machine used during the measured "
        "writes (all CPUs busy minus the servers, this client and the PostgreSQL backends; "
        f"2 = both cores taken): above {DISTURBED_CORES} the tail figures say more about the "
        "neighbours than about tamma-sync."
    )
    targets = []
    for result in results:
        sse, poll = result["sse_ms"], result["poll_ms"]
        if not sse:
            continue
        is_target = result["processes"] == 2 and result["database"] == "postgresql"
        verdict = NONE
        if is_target:
            verdict = "met" if sse["p99"] <= TARGET_P99_MS else "**missed**"
            if result["other_cores"] > DISTURBED_CORES:
                verdict += f" (disturbed: {result['other_cores']:.2f} cores of other load)"
        targets.append(
            [
                result["scenario"],
                f"{fmt(sse['p99'])} ms",
                verdict,
                f"{poll['p50'] / sse['p50']:,.0f}{TIMES}" if poll and sse["p50"] else NONE,
                f"{poll['p99'] / sse['p99']:,.0f}{TIMES}" if poll and sse["p99"] else NONE,
            ]
        )
    report.add(
        Table(
            "Target: p99 ≤ 50 ms across processes (pg-2proc)",
            [
                "scenario",
                "SSE p99",
                "target",
                "baseline/SSE at p50",
                "baseline/SSE at p99",
            ],
            targets,
        )
    )


async def _main_async(
    args: argparse.Namespace, admin_url: str, scenarios: list[str]
) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="tamma-bench-") as tmp:
        for name in scenarios:
            print(f"[{name}] {args.writes} writes at {args.rate:g}/s ...", file=sys.stderr)
            result = await retrying_async(
                name,
                functools.partial(_run_scenario, name, args, admin_url, Path(tmp)),
                admin_url if SCENARIOS[name][0] == "postgresql" else None,
            )
            sse, poll = result["sse_ms"], result["poll_ms"]
            print(
                f"  SSE p50 {sse.get('p50', 0):.1f} ms p99 {sse.get('p99', 0):.1f} ms "
                f"({result['sse_received']}/{result['writes']}); poll p50 "
                f"{poll.get('p50', 0):.0f} ms p99 {poll.get('p99', 0):.0f} ms",
                file=sys.stderr,
            )
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.feed_latency",
        description="Store write → SSE frame latency (p50/p99), against a 1 s store poll.",
    )
    parser.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated, from {', '.join(SCENARIOS)} (default {DEFAULT_SCENARIOS})",
    )
    parser.add_argument("--writes", type=int, default=300, help="measured writes (300)")
    parser.add_argument("--rate", type=float, default=10.0, help="writes per second (10)")
    parser.add_argument("--instances", type=int, default=20, help="instances written to (20)")
    parser.add_argument(
        "--poll-period", type=float, default=1.0, help="baseline poll period in s (1.0)"
    )
    common_arguments(parser)
    args = parser.parse_args(argv)
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {unknown}")
    admin_url = postgres_admin_url(args.postgres_url)
    uses_postgres = any(SCENARIOS[name][0] == "postgresql" for name in scenarios)
    report = Report(
        "Feed latency: store write → SSE frame",
        MODULE,
        machine_description(admin_url if uses_postgres else None),
    )
    busy = wait_for_quiet(args.quiet_wait)
    import uvloop

    results = uvloop.run(_main_async(args, admin_url, scenarios))
    report.raw = {"args": vars(args), "busy_before": busy, "results": results}
    _write_report(report, args, results)
    report.publish(record=args.record)


if __name__ == "__main__":
    main()
