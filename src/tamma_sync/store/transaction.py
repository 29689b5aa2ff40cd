"""One write transaction: what it writes, counts and records as it goes, and the last
statements that write it all just before commit (`last_statements`). `Database.writing`
opens one and commits it; `Database.unlocked_transaction` gathers a single row's write to
send as one statement."""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tamma_sync.models import ChangeOp, EntityKind
from tamma_sync.store.bulk import Run, Step, run_steps
from tamma_sync.store.dialect import Dialect, Upsert
from tamma_sync.store.last_statements import ADD_TO_COUNTS, ADD_TO_TOTALS, run_last_statements
from tamma_sync.store.rows import chunks
from tamma_sync.store.trends import (
    ADD_TO_ROLLUPS,
    TrendDeltas,
    add_deltas,
    count_transitions,
    new_deltas,
    rollup_rows,
)


@functools.cache
def _one_by_id(table: sa.Table, id_column: sa.Column[str]) -> sa.Select[Any]:
    """A tenant's row of `table` by id, live or tombstoned."""
    return sa.select(table).where(
        table.c.tenant_id == sa.bindparam("tenant_id", type_=sa.String),
        id_column == sa.bindparam("id", type_=sa.String),
    )


def _upsert(table: sa.Table, key: list[str] | None) -> Upsert:
    """An upsert of every column of `table` (`Transaction.upsert_rows`)."""
    return _upsert_of(table, tuple(key) if key is not None else None)


@functools.cache
def _upsert_of(table: sa.Table, key: tuple[str, ...] | None) -> Upsert:
    """Made once: listing a table's columns through SQLAlchemy on every write was a
    twelfth of a single-row write's client instructions on PostgreSQL."""
    return Upsert(table, tuple(column.name for column in table.columns), key)


@dataclass
class WriteResult:
    """What a bulk write did, counted by outcome."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def add(self, other: WriteResult) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted


@dataclass
class Transaction:
    """One write transaction: its connection and the change rows it will append."""

    sql_conn: AsyncConnection | None
    """The pool's connection it runs on; None when it runs on a connection of the store's
    own (`direct`)."""
    dialect: Dialect
    now: int
    direct: Run | None = None
    """What runs its statements on SQLite's loop-thread connection (`LoopThreadWrites`) or
    one of PostgreSQL's held ones (`HeldConnections`), when it runs on one."""
    pending_changes: list[dict[str, Any]] = field(default_factory=list)
    count_deltas: collections.Counter[tuple[str, str, str, str]] = field(
        default_factory=collections.Counter
    )
    trend_deltas: TrendDeltas = field(default_factory=new_deltas)
    inserted: collections.Counter[str] = field(default_factory=collections.Counter)
    """Rows added per table, for planner statistics."""
    written_last: list[tuple[Upsert, list[dict[str, Any]]]] = field(default_factory=list)
    """Rows to write with the last statements (`upsert_rows(last=True)`)."""
    refreshed_definitions: bool = False
    """A definition's `syncedAt` moved without a change record (a POST that changed
    nothing else)."""
    sent: asyncio.Event | None = None
    """Set as the last statements go to the database (`finish`): a caller that makes the
    next write ready meanwhile waits for it, so that this write's own work on the event
    loop goes first."""

    @property
    def conn(self) -> AsyncConnection:
        """The connection, for statements SQLAlchemy runs: a write on a connection of the
        store's own has none (it runs driver statements only, `run`)."""
        if self.sql_conn is None:
            raise RuntimeError("a single-row write runs driver statements only")
        return self.sql_conn

    async def run(self, steps: Sequence[Step]) -> Sequence[Sequence[Any]]:
        """Driver statements in one trip (`run_steps`), on whichever connection this
        transaction runs on; the rows of the last one."""
        if self.direct is not None:
            return await self.direct(steps)
        return await run_steps(self.conn, steps)

    async def read_mappings(
        self, statement: sa.ClauseElement, parameters: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """A read in this transaction, as dicts by column name (`DriverSql.as_mappings`)."""
        driver_sql = self.dialect.driver_form(statement)
        return driver_sql.as_mappings(await self.run([driver_sql.step(parameters)]))

    @property
    def changes_catalog(self) -> bool:
        """Whether this transaction changes a definition or moves an instance count
        (retention's purge of ended instances moves counts, and a refreshed `syncedAt`
        changes a definition, without recording a change)."""
        return (
            self.refreshed_definitions
            or any(self.count_deltas.values())
            or any(
                change["entity"] == EntityKind.DEFINITION.value for change in self.pending_changes
            )
        )

    def count(self, tenant_id: str, row: Mapping[str, Any], delta: int) -> None:
        """Move the live-instance count of `row`'s (source, definition, sub-status)."""
        key = (tenant_id, row["source_id"] or "", row["definition_id"], row["sub_status"] or "")
        self.count_deltas[key] += delta

    def observe(
        self, tenant_id: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]
    ) -> None:
        """Count what writing instance row `new` over the live row `old` (None: new to the
        mirror) adds to the trends."""
        count_transitions(self.trend_deltas, tenant_id, old, new, self.now)

    def record(
        self,
        tenant_id: str,
        entity: EntityKind,
        entity_id: str,
        op: ChangeOp,
        revision: int,
        data: dict[str, Any],
        definition_id: str | None = None,
        sub_status: str | None = None,
    ) -> None:
        self.pending_changes.append(
            {
                "tenant_id": tenant_id,
                "entity": entity.value,
                "entity_id": entity_id,
                "op": op.value,
                "revision": revision,
                "at": self.now,
                "definition_id": definition_id,
                "sub_status": sub_status,
                "data": data,
            }
        )

    async def select_by_ids(
        self, table: sa.Table, id_column: sa.Column[str], tenant_id: str, ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Stored rows (live or tombstoned) by id, for the ids that exist."""
        found: dict[str, dict[str, Any]] = {}
        if len(ids) == 1:  # a single write's: compiled once
            parameters = {"tenant_id": tenant_id, "id": ids[0]}
            found_one = await self.read_mappings(_one_by_id(table, id_column), parameters)
            return {row[id_column.name]: row for row in found_one}
        for chunk in chunks(list(dict.fromkeys(ids))):
            rows = await self.conn.execute(
                sa.select(table).where(
                    table.c.tenant_id == tenant_id, self.dialect.ids_match(id_column, chunk)
                )
            )
            for row in rows.mappings():
                found[row[id_column.name]] = dict(row)
        return found

    async def upsert_rows(
        self,
        table: sa.Table,
        key: list[str] | None,
        rows: list[dict[str, Any]],
        *,
        last: bool = False,
    ) -> None:
        """Insert rows, overwriting every column of those whose `key` already exists (with
        no key, a row whose key exists fails the write). `last`: write them with the last
        statements (`finish`), one trip fewer, for a caller after which this transaction
        reads nothing of `table`."""
        if last:
            self.write_last(table, key, rows)
        else:
            await self.run(self.dialect.bulk_statement(_upsert(table, key)).steps(rows))

    def write_last(
        self, table: sa.Table, key: list[str] | None, rows: list[dict[str, Any]]
    ) -> None:
        """`upsert_rows(last=True)`: the rows are left for the last statements (`finish`)."""
        self.written_last.append((_upsert(table, key), rows))

    def take(self, gathered: Transaction) -> None:
        """Write what `gathered`, a transaction with no connection that only gathered
        writes, would have written: its rows left for the last statements, its counts,
        trends and change rows (recorded at this transaction's time). `gathered` is used
        up."""
        for change in gathered.pending_changes:
            change["at"] = self.now
        self.pending_changes += gathered.pending_changes
        self.count_deltas.update(gathered.count_deltas)
        add_deltas(self.trend_deltas, gathered.trend_deltas)
        self.inserted.update(gathered.inserted)
        for upsert, rows in gathered.written_last:
            if self.written_last and self.written_last[-1][0] == upsert and upsert.key is None:
                self.written_last[-1][1].extend(rows)  # inserted by one statement, not two
            else:
                self.written_last.append((upsert, rows))
        self.refreshed_definitions |= gathered.refreshed_definitions

    async def finish(self) -> int | None:
        """What every write does last, just before commit, in one trip to the driver
        (`last_statements`): write the rows left for it, move the kept counts and the
        trends, move the catalog revision on, append the change rows. The newest change
        seq, if any."""
        if self.sent is not None:
            self.sent.set()
        return await run_last_statements(
            self.run, self.dialect, self.last_rows(), self.changes_catalog, self.pending_changes
        )

    def last_rows(self) -> list[tuple[Upsert, list[dict[str, Any]]]]:
        """The rows the last statements add (`finish`), by upsert, the change rows apart."""
        return [
            *self.written_last,
            *self._count_rows(),
            (ADD_TO_ROLLUPS, rollup_rows(self.trend_deltas)),
        ]

    def _count_rows(self) -> list[tuple[Upsert, list[dict[str, Any]]]]:
        """What moves the kept counts, and their per-sub-status totals, by this
        transaction's deltas."""
        totals: collections.Counter[tuple[str, str]] = collections.Counter()
        rows = []
        for (tenant_id, source_id, definition_id, sub_status), delta in self.count_deltas.items():
            if delta:
                totals[tenant_id, sub_status] += delta
                rows.append(
                    {
                        "tenant_id": tenant_id,
                        "source_id": source_id,
                        "definition_id": definition_id,
                        "sub_status": sub_status,
                        "count": delta,
                    }
                )
        total_rows = [
            {"tenant_id": tenant_id, "sub_status": sub_status, "count": delta}
            for (tenant_id, sub_status), delta in totals.items()
            if delta
        ]
        return [(ADD_TO_COUNTS, rows), (ADD_TO_TOTALS, total_rows)]
