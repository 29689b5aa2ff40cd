"""Load test: concurrent writers and many SSE subscribers on PostgreSQL, for a bounded time.

    .venv/bin/python -m bench.load_mixed [--duration 30] [--subscribers 300] [--replicas 2]

Compatible writers PUT instances (each PUT a real change) and a batch writer posts
`/api/sync/batch` batches, through two `tamma-sync serve` replicas on one PostgreSQL, while
subscribers listen on both replicas: per-instance streams, the global stream, and the global
stream filtered to `subStatus=Faulted`. Every subscriber connects with `Last-Event-ID` set to
the change-log head before the writes start, so afterwards its frames can be compared with
the change log itself: every change for its filter, in order, none twice, none missing. It
reports write throughput and latency, delivery latency (commit `at` → frame arrival), and
the count of 5xx answers (the target is zero). Not part of the test suite: it loads the
machine for the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._common import (
    Report,
    Table,
    common_arguments,
    distribution_ms,
    fmt,
    machine_description,
    postgres_admin_url,
    raise_fd_limit,
    temp_postgres_database,
    wait_for_quiet,
)
from bench._servers import Child, tamma_sync_server
from bench._sse import SseStream
from tamma_sync.feed import ChangeFilter
from tamma_sync.models import DEFAULT_TENANT_ID, Change, EntityKind, SubStatus
from tamma_sync.settings import normalize_database_url
from tamma_sync.store import Store

T = DEFAULT_TENANT_ID
RUNNING = ["pending", "running", "suspended"]
BATCH_SUB_STATUSES = ["Pending", "Executing", "Suspended", "Finished", "Faulted"]


@dataclass
class Subscriber:
    path: str
    change_filter: ChangeFilter
    frames: list[tuple[int, float]] = field(default_factory=list)
    """(seq, arrival wall-clock ms) of every event frame, in arrival order."""
    error: str | None = None


@dataclass
class Writes:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    rows: int = 0

    def record(self, started: float, status: int, rows: int) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status < 400:
            self.rows += rows


async def _listen(replica: Child, subscriber: Subscriber, head: int, stop: asyncio.Event) -> None:
    try:
        stream = await SseStream.open(
            replica.base_url, subscriber.path, headers={"Last-Event-ID": str(head)}
        )
    except Exception as exc:
        subscriber.error = f"open: {exc}"
        return
    try:
        async for frame in stream.frames():
            if frame.event is not None and frame.id is not None:
                subscriber.frames.append((int(frame.id), time.time() * 1000))
            elif frame.event is None and stop.is_set():
                return
    finally:
        await stream.close()


async def _compat_writer(
    http: httpx.AsyncClient, ids: Sequence[str], writes: Writes, deadline: float, seed: int
) -> None:
    rng = random.Random(seed)
    step = 0
    while time.monotonic() < deadline:
        step += 1
        body = {"status": rng.choice(RUNNING), "currentActivity": f"step-{seed}-{step}"}
        started = time.perf_counter()
        response = await http.put(f"/api/workflows/instances/{rng.choice(ids)}", json=body)
        writes.record(started, response.status_code, 1)


async def _batch_writer(
    http: httpx.AsyncClient, ids: Sequence[str], writes: Writes, deadline: float, size: int
) -> None:
    rng = random.Random(7)
    step = 0
    while time.monotonic() < deadline:
        step += 1
        chosen = rng.sample(list(ids), min(size, len(ids)))
        batch = {
            "sourceId": "load",
            "instances": [
                {
                    "id": instance_id,
                    "definitionId": "wf-batch",
                    "status": "Running",
                    "subStatus": rng.choice(BATCH_SUB_STATUSES),
                    "variables": {"step": step},
                }
                for instance_id in chosen
            ],
        }
        started = time.perf_counter()
        response = await http.post("/api/sync/batch", json=batch)
        writes.record(started, response.status_code, len(chosen))


def _expected(changes: Sequence[Change], change_filter: ChangeFilter) -> list[int]:
    return [change.seq for change in changes if change_filter.matches(change)]


async def _run(args: argparse.Namespace, report: Report) -> None:
    admin_url = postgres_admin_url(args.postgres_url)
    with (
        temp_postgres_database(admin_url, "load") as database_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        workdir = Path(tmp)
        store = Store.from_url(normalize_database_url(database_url))
        await store.migrate()
        compat_ids = [f"compat-{n:04}" for n in range(args.instances)]
        batch_ids = [f"batch-{n:04}" for n in range(args.instances)]
        with contextlib.ExitStack() as replicas:
            servers = [
                replicas.enter_context(
                    tamma_sync_server(database_url, workdir / f"r{n}", heartbeat_seconds=1.0)
                )
                for n in range(args.replicas)
            ]
            async with httpx.AsyncClient(base_url=servers[0].base_url, timeout=30) as seed_http:
                for instance_id in compat_ids:
                    body = {"id": instance_id, "definitionId": "wf-compat", "status": "running"}
                    (await seed_http.post("/api/workflows/instances", json=body)).raise_for_status()
            head = await store.last_seq()
            subscribers: list[Subscriber] = []
            rng = random.Random(3)
            for n in range(args.subscribers):
                kind = n % 4
                if kind < 2:
                    instance_id = rng.choice(compat_ids)
                    subscribers.append(
                        Subscriber(
                            f"/api/workflows/instances/{instance_id}/events",
                            ChangeFilter(T, entity=EntityKind.INSTANCE, entity_id=instance_id),
                        )
                    )
                elif kind == 2:
                    subscribers.append(
                        Subscriber(
                            "/api/events?entity=instance",
                            ChangeFilter(T, entity=EntityKind.INSTANCE),
                        )
                    )
                else:
                    subscribers.append(
                        Subscriber(
                            "/api/events?subStatus=Faulted",
                            ChangeFilter(T, sub_statuses=frozenset({SubStatus.FAULTED})),
                        )
                    )
            stop = asyncio.Event()
            listeners = [
                asyncio.create_task(_listen(servers[n % len(servers)], subscriber, head, stop))
                for n, subscriber in enumerate(subscribers)
            ]
            await asyncio.sleep(2.0)  # streams open and backfilled (nothing to backfill yet)
            compat, batches = Writes(), Writes()
            clients = [
                httpx.AsyncClient(base_url=server.base_url, timeout=30) for server in servers
            ]
            started = time.monotonic()
            deadline = started + args.duration
            writers = [
                _compat_writer(clients[n % len(clients)], compat_ids, compat, deadline, n)
                for n in range(args.writers)
            ]
            writers.append(
                _batch_writer(clients[-1], batch_ids, batches, deadline, args.batch_size)
            )
            await asyncio.gather(*writers)
            elapsed = time.monotonic() - started
            await asyncio.sleep(3.0)  # the last frames arrive
            stop.set()
            await asyncio.sleep(2.0)  # one more heartbeat ends each listener
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
            for client in clients:
                await client.aclose()

            changes: list[Change] = []
            while page := await store.changes_after(
                changes[-1].seq if changes else head, limit=5000
            ):
                changes += page
            at_by_seq = {change.seq: change.at for change in changes}
        await store.close()

    complete = 0
    problems: list[str] = []
    delivery: list[float] = []
    for subscriber in subscribers:
        got = [seq for seq, _ in subscriber.frames]
        want = _expected(changes, subscriber.change_filter)
        if subscriber.error:
            problems.append(f"{subscriber.path}: {subscriber.error}")
        elif got == want:
            complete += 1
        else:
            missing = sorted(set(want) - set(got))[:5]
            problems.append(
                f"{subscriber.path}: {len(got)} frames, {len(want)} expected, missing {missing}"
            )
        delivery += [
            (arrived - at_by_seq[seq]) / 1000
            for seq, arrived in subscriber.frames
            if seq in at_by_seq
        ]

    five_xx = sum(
        count for status, count in {**compat.statuses, **batches.statuses}.items() if status >= 500
    )
    frames = sum(len(s.frames) for s in subscribers)
    put = distribution_ms(compat.latencies)
    batch = distribution_ms(batches.latencies)
    seen = distribution_ms(delivery)
    report.raw.update(
        subscribers=len(subscribers),
        complete=complete,
        problems=problems,
        changes=len(changes),
        frames=frames,
        compat_statuses=compat.statuses,
        batch_statuses=batches.statuses,
        elapsed=elapsed,
    )
    report.add(
        f"Setup: {args.replicas} `tamma-sync serve` replicas (default settings, 1 s heartbeat) on "
        f"one fresh PostgreSQL database; {args.instances} instances written by {args.writers} "
        f"compatible writers (`PUT`, each a real change, spread over the replicas) and "
        f"{args.instances} by one batch writer (`POST /api/sync/batch`, {args.batch_size} "
        f"instances per batch, some ending Faulted); {len(subscribers)} subscribers spread over "
        f"the replicas: half per-instance streams, a quarter `/api/events?entity=instance`, a "
        f"quarter `/api/events?subStatus=Faulted`, all connected with `Last-Event-ID` = the "
        f"change-log head before the writes. {args.duration:.0f} s of writes. Afterwards each "
        f"subscriber's frames are compared with the change log. Client, servers and the "
        f"database share the machine's 2 cores."
    )
    report.add(
        Table(
            "",
            ["what", "count", "per second", "p50 ms", "p99 ms", "5xx"],
            [
                [
                    "compatible PUTs",
                    str(len(compat.latencies)),
                    fmt(len(compat.latencies) / elapsed, 0),
                    fmt(put["p50"]),
                    fmt(put["p99"]),
                    str(sum(c for s, c in compat.statuses.items() if s >= 500)),
                ],
                [
                    f"batches of {args.batch_size}",
                    str(len(batches.latencies)),
                    fmt(batches.rows / elapsed, 0) + " rows",
                    fmt(batch["p50"]),
                    fmt(batch["p99"]),
                    str(sum(c for s, c in batches.statuses.items() if s >= 500)),
                ],
                [
                    "changes committed → frames delivered",
                    f"{len(changes)} → {frames}",
                    fmt(frames / elapsed, 0) + " frames",
                    fmt(seen["p50"]),
                    fmt(seen["p99"]),
                    "-",
                ],
            ],
        )
    )
    if problems:
        report.add("Problems:\n\n" + "\n".join(f"- {p}" for p in problems[:20]))
    report.verdict(
        f"**Subscribers that received every change for their filter, in order, once: "
        f"{complete} of {len(subscribers)}**; 5xx answers: **{five_xx}**."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common_arguments(parser)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()
    raise_fd_limit(args.subscribers * 2 + 256)
    wait_for_quiet(args.quiet_wait)
    report = Report(
        "Load: concurrent writers and SSE subscribers on PostgreSQL",
        "bench.load_mixed",
        machine_description(postgres_admin_url(args.postgres_url)),
    )
    asyncio.run(_run(args, report))
    report.publish(record=args.record)


if __name__ == "__main__":
    main()
