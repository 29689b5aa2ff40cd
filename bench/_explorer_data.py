"""What `bench.explorer_reads` does to a loaded scale database before serving it, and the
plans of the statements it measured.

- `prepare`: long histories (`--history-updates` updates to each of `--history-instances`
  running instances, through `Store.update_instance`, the compatible PUT's write path,
  interleaved round by round as live instances change), then the values the explorer's
  filters are measured with, read from the database (seeded, so both databases, loaded
  from the same seed, get the same ones): existing ids (first id at or after a random
  16-hex-digit key, along the primary key), their correlation ids and id prefixes, the
  ranges of `createdAt` and `updatedAt`, the definitions by size, the activities where
  each one's running instances wait, and the sources.
- `explain`: one listing request as the store runs it (`page_statement` of its shape,
  compiled for the database, the values `page_parameters` binds), timed alone (best of
  three) and explained (`EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL, and its generic plan
  when that differs; `EXPLAIN QUERY PLAN` on SQLite).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tamma_sync.api.filters import sub_status_filter
from tamma_sync.api.pagination import decode_cursor
from tamma_sync.models import DEFAULT_TENANT_ID, InstancePatch, SubStatus, WorkflowStatus, now_ms
from tamma_sync.settings import normalize_database_url
from tamma_sync.store import InstanceQuery, Store
from tamma_sync.store.bulk import DriverSql
from tamma_sync.store.pages import OrderBy, PageShape, page_parameters, page_statement
from tamma_sync.store.tables import instance_counts, instances

TENANT = DEFAULT_TENANT_ID
RUNNING = tuple(s.value for s in SubStatus if s.status is WorkflowStatus.RUNNING)
#: What the history updates move an instance between.
UPDATE_STATES = (SubStatus.EXECUTING, SubStatus.SUSPENDED)
#: An instance drawn at random: id, correlation id, definition id, sub-status.
SampledRow = sa.Row[Any, Any, Any, Any]


@dataclass
class Sample:
    """The values the measured requests are made of (found in the database, not timed)."""

    ids: list[str]
    """Existing live ids, random."""
    long_history_ids: list[str]
    correlation_ids: list[str]
    created_range: tuple[int, int]
    updated_range: tuple[int, int]
    definitions: list[tuple[str, int]]
    """Every definition with its live instances, the biggest first."""
    activities: dict[str, str] = field(default_factory=dict)
    """For each of the spread definitions that has running instances: an activity where
    some wait (drawn weighted by how many)."""
    sources: list[str] = field(default_factory=list)
    updates: int = 0
    updates_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ids"] = len(self.ids)
        data["correlation_ids"] = len(self.correlation_ids)
        data["definitions"] = len(self.definitions)
        data["activities"] = len(self.activities)
        return data


def spread(definitions: Sequence[tuple[str, int]], count: int) -> list[tuple[str, int]]:
    """`count` definitions evenly over the ranking by size, the biggest first."""
    step = max(1, len(definitions) // count)
    return list(definitions[::step][:count])


async def _random_rows(conn: AsyncConnection, rng: random.Random, count: int) -> list[SampledRow]:
    statement = (
        sa.select(
            instances.c.id,
            instances.c.correlation_id,
            instances.c.definition_id,
            instances.c.sub_status,
        )
        .where(
            instances.c.tenant_id == TENANT,
            instances.c.id >= sa.bindparam("key"),
            instances.c.deleted_at.is_(None),
        )
        .order_by(instances.c.id)
        .limit(1)
    )
    rows: dict[str, SampledRow] = {}
    for _ in range(count * 2):
        if len(rows) >= count:
            break
        found = (await conn.execute(statement, {"key": f"{rng.getrandbits(64):016x}"})).first()
        if found is not None:
            rows[found.id] = found
    return list(rows.values())


async def _edge(conn: AsyncConnection, column: sa.Column[Any]) -> tuple[int, int]:
    def one(order: sa.UnaryExpression[Any]) -> sa.Select[Any]:
        return (
            sa.select(column)
            .where(instances.c.tenant_id == TENANT, instances.c.deleted_at.is_(None))
            .order_by(order)
            .limit(1)
        )

    low = (await conn.execute(one(column.asc()))).scalar_one()
    high = (await conn.execute(one(column.desc()))).scalar_one()
    return int(low), int(high)


async def _waiting_activity(
    conn: AsyncConnection, definition_id: str, rng: random.Random
) -> str | None:
    rows = (
        await conn.execute(
            sa.select(instances.c.current_activity, sa.func.count())
            .where(
                instances.c.tenant_id == TENANT,
                instances.c.definition_id == definition_id,
                instances.c.sub_status.in_(RUNNING),
                instances.c.current_activity.is_not(None),
                instances.c.deleted_at.is_(None),
            )
            .group_by(instances.c.current_activity)
            .order_by(instances.c.current_activity)
        )
    ).all()
    if not rows:
        return None
    return str(rng.choices([row[0] for row in rows], weights=[row[1] for row in rows])[0])


async def _write_histories(
    store: Store, rows: Sequence[SampledRow], updates: int, activities: Mapping[str, list[str]]
) -> int:
    """`updates` rounds, one update of each instance per round; returns the writes made."""
    written = 0
    clock = now_ms()
    for round_number in range(updates):
        for row in rows:
            choices = activities.get(row.definition_id) or ["step"]
            patch = InstancePatch(
                sub_status=UPDATE_STATES[round_number % 2],
                current_activity=f"{choices[round_number % len(choices)]}",
                variables={"round": round_number, "attempt": round_number // 10 + 1},
                updated_at=clock + round_number * 1_000,
            )
            if await store.update_instance(TENANT, row.id, patch) is not None:
                written += 1
    return written


async def _activity_ids(conn: AsyncConnection, definition_id: str) -> list[str]:
    rows = await conn.execute(
        sa.select(instances.c.current_activity)
        .where(
            instances.c.tenant_id == TENANT,
            instances.c.definition_id == definition_id,
            instances.c.current_activity.is_not(None),
            instances.c.deleted_at.is_(None),
        )
        .distinct()
        .limit(20)
    )
    return sorted(str(row[0]) for row in rows)


async def prepare(
    database_url: str,
    *,
    seed: int,
    samples: int,
    spread_count: int,
    history_instances: int,
    history_updates: int,
) -> Sample:
    rng = random.Random(seed)
    store = Store.from_url(normalize_database_url(database_url))
    try:
        async with store.sql_engine.connect() as conn:
            rows = await _random_rows(conn, rng, samples + history_instances * 4)
            running = [row for row in rows if row.sub_status in RUNNING]
            chosen = running[:history_instances]
            rest = [row for row in rows if row.id not in {c.id for c in chosen}]
            ids = [row.id for row in rest[:samples]]
            correlation = [row.correlation_id for row in rest if row.correlation_id][:samples]
            counted = (
                await conn.execute(
                    sa.select(instance_counts.c.definition_id, sa.func.sum(instance_counts.c.count))
                    .where(instance_counts.c.tenant_id == TENANT)
                    .group_by(instance_counts.c.definition_id)
                )
            ).all()
            definitions = sorted(
                ((str(d), int(n)) for d, n in counted if n), key=lambda item: (-item[1], item[0])
            )
            sources = (
                await conn.execute(
                    sa.select(instance_counts.c.source_id)
                    .where(instance_counts.c.tenant_id == TENANT, instance_counts.c.source_id != "")
                    .distinct()
                )
            ).all()
            known = {
                row.definition_id: await _activity_ids(conn, row.definition_id) for row in chosen
            }
        started = time.perf_counter()
        written = await _write_histories(store, chosen, history_updates, known)
        updates_s = time.perf_counter() - started
        async with store.sql_engine.connect() as conn:
            activities: dict[str, str] = {}
            for definition_id, _ in spread(definitions, spread_count):
                activity = await _waiting_activity(conn, definition_id, rng)
                if activity is not None:
                    activities[definition_id] = activity
            created = await _edge(conn, instances.c.created_at)
            updated = await _edge(conn, instances.c.updated_at)
    finally:
        await store.close()
    return Sample(
        ids=ids,
        long_history_ids=[row.id for row in chosen],
        correlation_ids=correlation,
        created_range=created,
        updated_range=updated,
        definitions=definitions,
        activities=activities,
        sources=sorted(str(row[0]) for row in sources),
        updates=written,
        updates_s=updates_s,
    )


# -- plans -----------------------------------------------------------------------------------

_QUERY_FIELDS = {f.name for f in fields(InstanceQuery)}


def query_of(params: Mapping[str, str]) -> InstanceQuery:
    """The store query a listing request makes (as `list_instances` reads its parameters)."""
    order_by = params.get("orderBy", "createdAt")
    direction = params.get("orderDirection") or ("asc" if order_by == "createdAt" else "desc")
    descending = direction == "desc"
    found: dict[str, Any] = {
        "definition_id": params.get("definitionId") or None,
        "sub_statuses": sub_status_filter(params.get("status"), params.get("subStatus")),
        "correlation_id": params.get("correlationId"),
        "source_id": params.get("sourceId") or None,
        "id_prefix": params.get("idPrefix") or None,
        "current_activity": params.get("currentActivity") or None,
        "order_by": order_by,
        "descending": descending,
        "limit": int(params.get("pageSize", "50")),
        "after": decode_cursor(params["cursor"], cast(OrderBy, order_by), descending)
        if params.get("cursor")
        else None,
        "with_total": params.get("includeTotal", "true") != "false",
    }
    for name in ("createdSince", "createdBefore", "updatedSince", "updatedBefore"):
        if name in params:
            found[name.replace("Since", "_since").replace("Before", "_before").lower()] = int(
                params[name]
            )
    unsupported = [name for name, value in found.items() if name not in _QUERY_FIELDS and value]
    if unsupported:
        raise ValueError(f"the store has no {unsupported}")
    return InstanceQuery(**{k: v for k, v in found.items() if k in _QUERY_FIELDS})


SQLITE_EXPLAIN = "EXPLAIN QUERY PLAN "
#: Request parameters left out where a plan names its request's values.
EXPLORER_KEYS = ("orderBy", "orderDirection", "pageSize")
POSTGRES_EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS) "


def _nodes(plan: str) -> list[str]:
    """A PostgreSQL plan's nodes and their indexes, without costs, timings or values."""
    return [line.split("(cost=")[0].strip() for line in plan.splitlines() if "(cost=" in line]


async def _postgres_plans(conn: AsyncConnection, sql: str, values: tuple[Any, ...]) -> str:
    """The plan PostgreSQL makes for these values and, when it differs, the generic plan
    that a prepared statement (asyncpg prepares each one) may switch to after five runs."""
    custom = "\n".join(
        str(r[0]) for r in await conn.exec_driver_sql(POSTGRES_EXPLAIN + sql, values)
    )
    await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    try:
        rows = await conn.exec_driver_sql(POSTGRES_EXPLAIN + sql, values)
        generic = "\n".join(str(r[0]) for r in rows)
    finally:
        await conn.exec_driver_sql("RESET plan_cache_mode")
    if _nodes(generic) == _nodes(custom):
        return custom
    return f"{custom}\n\ngeneric plan (plan_cache_mode = force_generic_plan):\n{generic}"


def _sqlite_plan(rows: Sequence[Sequence[Any]]) -> str:
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + str(detail))
    return "\n".join(lines)


async def _timed(conn: AsyncConnection, sql: str, values: tuple[Any, ...]) -> float:
    started = time.perf_counter()
    await conn.exec_driver_sql(sql, values)
    return time.perf_counter() - started


async def explain(
    database_url: str,
    scenarios: Mapping[str, Sequence[Mapping[str, str]]],
    *,
    most: int = 10,
    budget_s: float = 20.0,
) -> dict[str, str]:
    """Per scenario: up to `most` of its listing requests (spread over them; fewer once
    `budget_s` is spent), each statement timed alone, one at a time, after one warm-up
    run; then the plan of the slowest."""
    store = Store.from_url(normalize_database_url(database_url))
    dialect = store.sql_engine.dialect
    plans: dict[str, str] = {}
    try:
        for key, requests in scenarios.items():
            chosen = list(requests[:: max(1, len(requests) // most)][:most])
            timed: list[tuple[float, Mapping[str, str], str, tuple[Any, ...]]] = []
            started = time.perf_counter()
            async with store.sql_engine.connect() as conn:
                for params in chosen:
                    query = query_of(params)
                    sql = DriverSql.of(page_statement(PageShape.of(query)), dialect)
                    bound = page_parameters(TENANT, query)
                    values = tuple(bound[n] if n in bound else sql.fixed[n] for n in sql.names)
                    if not timed:
                        await _timed(conn, sql.sql, values)
                    timed.append((await _timed(conn, sql.sql, values), params, sql.sql, values))
                    if time.perf_counter() - started > budget_s:
                        break
                timed.sort(key=lambda item: item[0])
                seconds, params, slowest, values = timed[-1]
                if store.is_sqlite:
                    rows = (await conn.exec_driver_sql(SQLITE_EXPLAIN + slowest, values)).all()
                    text = _sqlite_plan(rows)
                else:
                    text = await _postgres_plans(conn, slowest, values)
            median = timed[len(timed) // 2][0]
            shown = {k: v for k, v in params.items() if k not in ("cursor", *EXPLORER_KEYS)}
            runs = f"{len(timed)} request{'s' * (len(timed) > 1)}"
            plans[key] = (
                f"alone, one at a time: median {median * 1000:,.1f} ms, slowest "
                f"{seconds * 1000:,.1f} ms of {runs}; its plan "
                f"({', '.join(f'{k}={v}' for k, v in shown.items())}):\n{text}"
            )
    finally:
        await store.close()
    return plans
