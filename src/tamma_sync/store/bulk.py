"""Bulk writes: compiled once, run through the driver's executemany, and the planner
statistics that big writes make stale."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tamma_sync.store.rows import chunks, json_text

#: Rows per executemany in bulk writes.
BULK_CHUNK = 1_000


class BulkStatement:
    """A compiled INSERT run through the driver's executemany with parameters built here:
    SQLAlchemy's per-row parameter processing is most of a sync batch's cost otherwise.
    JSON columns are serialized with the store's own `dump_json`."""

    def __init__(self, compiled: sa.Compiled, table: sa.Table) -> None:
        self._sql = str(compiled)
        names = compiled.positiontup or []  # type: ignore[attr-defined]
        json_columns = {column.name for column in table.columns if isinstance(column.type, sa.JSON)}
        self._order = [(name, name in json_columns) for name in names]

    async def run(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        for chunk in chunks(list(rows), BULK_CHUNK):
            await conn.exec_driver_sql(
                self._sql,
                [
                    tuple(
                        (json_text(row[name]) if row[name] is not None else None)
                        if is_json
                        else row[name]
                        for name, is_json in self._order
                    )
                    for row in chunk
                ],
            )


class TableStats:
    """Rows this process added per table since it last had PostgreSQL ANALYZE it."""

    #: ANALYZE once a table grew by this share of the size it had at the last ANALYZE…
    GROWTH = 0.2
    #: …and by at least this many rows.
    MIN_ROWS = 5_000

    def __init__(self) -> None:
        self._added: collections.Counter[str] = collections.Counter()
        self._size_at_last: dict[str, int] = {}

    def grown_enough(self, inserted: collections.Counter[str]) -> list[str]:
        due: list[str] = []
        for table, rows in inserted.items():
            self._added[table] += rows
            size = self._size_at_last.get(table, 0)
            if self._added[table] >= max(self.MIN_ROWS, size * self.GROWTH):
                self._size_at_last[table] = size + self._added[table]
                self._added[table] = 0
                due.append(table)
        return due
