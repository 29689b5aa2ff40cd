"""Fill a fresh tamma-sync database with a large, realistic mirror, for the scale benchmarks.

`python -m bench._scale_data --database-url URL --instances 1000000 --definitions 1000`

Everything goes through the store's own write path, `Store.apply_sync_batch`, in batches
of 5,000 instances (the sync's largest batch), so the tables, the kept `instance_counts`,
the change log and the planner statistics are what a real initial sync leaves behind:

- definitions: the ELSA simulator's (`SimulatorConfig(definitions=D)`), fetched through its
  HTTP API in-process and mapped with `tamma_sync.elsa.mapping` as the sync maps them
  (activities and variables included, about 3.5 KB of JSON each);
- instances: spread over the definitions by a Zipf law (s = 1: with 1,000 definitions the
  busiest holds 13 % of the rows, the quietest about 130), with the simulator's sub-status
  mix (4 % Pending, 4 % Executing, 22 % Suspended, 55 % Finished, 5 % Cancelled, 10 %
  Faulted), created over the 90 days before the load, ELSA-like 16-hex-digit ids, written
  in `updatedAt` order as the sync's delta walk writes them; running instances carry a
  current activity and a few variables, ended ones none (the default details policy);
- the source's sync state (so the dashboard shows sync health), and two Tamma engines with
  500 events each (so the summary's "recent events" are real).

On PostgreSQL it ends with `VACUUM (ANALYZE)` of the instance tables (what autovacuum does
to an insert-only table soon after a load). SQLite is left as the server leaves it (the
application never runs ANALYZE there). Both then checkpoint (`CHECKPOINT`, which needs a
superuser or `pg_checkpoint`; SQLite `wal_checkpoint(TRUNCATE)`), so the reads measured next
find the load written out, as on a server that has been running a while. The last line
printed is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from tamma_sync.elsa.mapping import definition_write
from tamma_sync.elsa.wire import DefinitionList, DefinitionPage
from tamma_sync.models import (
    DEFAULT_TENANT_ID,
    DefinitionWrite,
    EngineEventWrite,
    EngineReport,
    InstanceWrite,
    SourceState,
    SubStatus,
    SyncBatch,
    SyncCounters,
    SyncPhase,
    now_ms,
)
from tamma_sync.settings import normalize_database_url
from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tamma_sync.store import Store

SOURCE_ID = "elsa"
BATCH = 5_000
DAY_MS = 86_400_000
HISTORY_MS = 90 * DAY_MS
RESULT_PREFIX = "RESULT "

#: The ELSA simulator's sub-status mix (src/tamma_sync/simulator/simulator.py).
SUB_STATUS_MIX: tuple[tuple[SubStatus, float], ...] = (
    (SubStatus.PENDING, 0.04),
    (SubStatus.EXECUTING, 0.04),
    (SubStatus.SUSPENDED, 0.22),
    (SubStatus.FINISHED, 0.55),
    (SubStatus.CANCELLED, 0.05),
    (SubStatus.FAULTED, 0.10),
)
ENDED = {SubStatus.FINISHED, SubStatus.CANCELLED, SubStatus.FAULTED}


@dataclass(frozen=True)
class DefinitionInfo:
    id: str
    version: int | None
    version_id: str | None
    activity_ids: tuple[str, ...]


def zipf_weights(count: int, exponent: float = 1.0) -> list[float]:
    """Cumulative weights of ranks 1..count under a Zipf law."""
    return list(itertools.accumulate(1.0 / rank**exponent for rank in range(1, count + 1)))


async def simulator_definitions(count: int, seed: int) -> list[DefinitionWrite]:
    """`count` definitions from the ELSA simulator, read over its API and mapped as the
    sync maps them (no network: httpx's ASGI transport)."""
    simulator = ElsaSimulator(SimulatorConfig(seed=seed, definitions=count, instances=0))
    headers = {"Authorization": f"ApiKey {ADMIN_API_KEY}"}
    transport = httpx.ASGITransport(app=simulator.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://elsa/elsa/api", headers=headers
    ) as client:
        summaries = []
        for page in itertools.count():
            response = await client.get(
                "/workflow-definitions",
                params={"versionOptions": "Latest", "page": page, "pageSize": 100},
            )
            response.raise_for_status()
            listed = DefinitionPage.model_validate(response.json())
            summaries.extend(listed.items)
            if len(listed.items) < 100:
                break
        writes: list[DefinitionWrite] = []
        for start in range(0, len(summaries), 50):
            chunk = summaries[start : start + 50]
            response = await client.get(
                "/workflow-definitions/many-by-id",
                params=[("ids", summary.id) for summary in chunk],
            )
            response.raise_for_status()
            full = DefinitionList.model_validate(response.json())
            writes.extend(definition_write(item, source_id=SOURCE_ID) for item in full.items)
    return writes


def _activity_ids(write: DefinitionWrite) -> tuple[str, ...]:
    ids = [str(a.get("id")) for a in write.activities or [] if isinstance(a, dict) and "id" in a]
    return tuple(ids) or ("start",)


def generate_instances(
    definitions: Sequence[DefinitionInfo], count: int, seed: int, end_ms: int
) -> list[dict[str, Any]]:
    """`count` instances over `definitions` (Zipf) as write fields, sorted by updatedAt then
    id (plain dicts: the write models are built a batch at a time)."""
    rng = random.Random(seed)
    cumulative = zipf_weights(len(definitions))
    status_cumulative = list(itertools.accumulate(share for _, share in SUB_STATUS_MIX))
    statuses = [status for status, _ in SUB_STATUS_MIX]
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number in range(count):
        definition = definitions[
            bisect.bisect_left(cumulative, rng.random() * cumulative[-1], hi=len(cumulative) - 1)
        ]
        sub_status = statuses[
            bisect.bisect_left(
                status_cumulative, rng.random() * status_cumulative[-1], hi=len(statuses) - 1
            )
        ]
        instance_id = f"{rng.getrandbits(64):016x}"
        while instance_id in seen:
            instance_id = f"{rng.getrandbits(64):016x}"
        seen.add(instance_id)
        created = end_ms - int(rng.random() * HISTORY_MS)
        # Seconds to days between creation and the last update, bounded by "now".
        updated = min(end_ms, created + int(rng.lognormvariate(13.0, 2.0)))
        ended = sub_status in ENDED
        running = not ended
        issue = rng.randrange(1, 20_000)
        rows.append(
            {
                "id": instance_id,
                "definition_id": definition.id,
                "status": "Finished" if ended else "Running",
                "sub_status": sub_status,
                "current_activity": rng.choice(definition.activity_ids) if running else None,
                "variables": (
                    {
                        "issueNumber": issue,
                        "repository": f"tamma/repo-{issue % 50}",
                        "branch": f"feature/issue-{issue}",
                        "attempt": rng.randrange(1, 4),
                        "approved": rng.random() < 0.5,
                    }
                    if running
                    else None
                ),
                "correlation_id": f"issue-{issue}" if number % 10 < 7 else None,
                "incident_count": 1 if sub_status is SubStatus.FAULTED else 0,
                "definition_version": definition.version,
                "definition_version_id": definition.version_id,
                "created_at": created,
                "updated_at": updated,
                "finished_at": updated if ended else None,
            }
        )
    rows.sort(key=lambda row: (row["updated_at"], row["id"]))
    return rows


def batches(rows: Sequence[dict[str, Any]], size: int = BATCH) -> Iterator[list[InstanceWrite]]:
    for start in range(0, len(rows), size):
        yield [InstanceWrite(**row) for row in rows[start : start + size]]


async def load(
    database_url: str, instances: int, definition_count: int, seed: int
) -> dict[str, float]:
    store = Store.from_url(normalize_database_url(database_url))
    timings: dict[str, float] = {}
    try:
        await store.migrate()
        started = time.perf_counter()
        definition_writes = await simulator_definitions(definition_count, seed)
        await store.upsert_definitions(DEFAULT_TENANT_ID, definition_writes)
        infos = [
            DefinitionInfo(w.id, w.version, w.version_id, _activity_ids(w))
            for w in definition_writes
        ]
        end_ms = now_ms()
        rows = generate_instances(infos, instances, seed, end_ms)
        timings["generate_s"] = time.perf_counter() - started
        started = time.perf_counter()
        state = SourceState(source_id=SOURCE_ID, phase=SyncPhase.SYNCING, url="http://elsa.local")
        written = 0
        for batch in batches(rows):
            written += len(batch)
            await store.apply_sync_batch(
                DEFAULT_TENANT_ID,
                SyncBatch(source_id=SOURCE_ID, instances=batch, state=state),
            )
            if written % 100_000 < BATCH:
                print(f"{written:,} instances in {time.perf_counter() - started:.0f}s", flush=True)
        done = state.model_copy(
            update={
                "phase": SyncPhase.IDLE,
                "last_success_at": now_ms(),
                "counters": SyncCounters(
                    cycles=1, definitions_written=definition_count, instances_written=written
                ),
            }
        )
        await store.apply_sync_batch(DEFAULT_TENANT_ID, SyncBatch(source_id=SOURCE_ID, state=done))
        timings["write_s"] = time.perf_counter() - started
        await _engines(store, seed)
        started = time.perf_counter()
        if not store.is_sqlite:
            async with store.sql_engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                for table in ("instances", "instance_counts", "definitions", "changes"):
                    await autocommit.execute(sa.text(f"VACUUM (ANALYZE) {table}"))
        timings["vacuum_analyze_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await _checkpoint(store)
        timings["checkpoint_s"] = time.perf_counter() - started
        timings["instances"] = float(written)
        timings["definitions"] = float(len(definition_writes))
    finally:
        await store.close()
    return timings


async def _checkpoint(store: Store) -> None:
    """Write the load out of the log into the data files now: otherwise PostgreSQL's
    checkpointer (spread over minutes) or SQLite's first checkpoint would do it during the
    first measured reads, which then measure the load's aftermath, not the reads."""
    async with store.sql_engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        if store.is_sqlite:
            await autocommit.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)"))
        else:
            await autocommit.execute(sa.text("CHECKPOINT"))


async def _engines(store: Store, seed: int) -> None:
    """Two Tamma engines with a history of events, as the dashboard summary shows them."""
    rng = random.Random(seed + 1)
    now = now_ms()
    for number in (1, 2):
        engine_id = f"tamma-engine-{number}"
        await store.put_engine(
            DEFAULT_TENANT_ID,
            engine_id,
            EngineReport(
                name=f"Tamma engine {number}",
                kind="tamma",
                version="0.9.0",
                state="IMPLEMENTING",
                stats={"issuesProcessed": rng.randrange(100), "totalCostUsd": 12.5},
                heartbeat_interval_seconds=3600,
            ),
        )
        events = [
            EngineEventWrite(
                type=rng.choice(["STATE_TRANSITION", "PLAN_GENERATED", "ISSUE_SELECTED"]),
                timestamp=now - (500 - index) * 60_000,
                issue_number=rng.randrange(1, 20_000),
                data={"from": "PLANNING", "to": "AWAITING_APPROVAL"},
            )
            for index in range(500)
        ]
        await store.add_engine_events(
            DEFAULT_TENANT_ID, engine_id, events, keep=1000, max_age_ms=30 * DAY_MS
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--definitions", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import uvloop

    timings = uvloop.run(load(args.database_url, args.instances, args.definitions, args.seed))
    print(RESULT_PREFIX + json.dumps(timings), flush=True)


if __name__ == "__main__":
    main()
