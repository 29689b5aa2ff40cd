"""What every write does last, just before commit, in one trip to the driver: add to the
kept counts, their totals and the trend rollups, move the catalog revision on, append the
change rows and read the newest seq (with its NOTIFY on PostgreSQL).

On SQLite a trip runs every statement in one call (`bulk.run_steps`). On PostgreSQL each
statement is a round trip, so a write that records changes sends them all as one
statement of data-modifying CTEs; the change rows are one INSERT that keeps the order they
were recorded in, and the newest seq is the largest it returns. A write that adds a few
rows (an API call's) gives them as VALUES, a statement per shape; a sync batch's give one
array per column (`Upsert.from_arrays`), a statement per set of tables.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tamma_sync.store.bulk import Run, Step, driver_columns, driver_rows
from tamma_sync.store.dialect import Dialect, Insert, Upsert
from tamma_sync.store.tables import catalog_revision, changes, instance_counts, instance_totals

#: PostgreSQL NOTIFY channel; the payload is the newest change seq of the transaction.
CHANGES_CHANNEL = "tamma_sync_changes"
#: On PostgreSQL the last statements give their rows as VALUES while they add at most this
#: many (an API write's: a new instance adds 9, a finished one 11), and as one array per
#: column beyond (a sync batch's).
ONE_STATEMENT_ROWS = 32

#: Appending the change rows (`seq` is the database's)…
APPEND_CHANGES = Upsert(
    changes, tuple(column.name for column in changes.columns if column.name != "seq")
)
#: …adding to the kept counts and their per-sub-status totals…
ADD_TO_COUNTS = Upsert(
    instance_counts,
    ("tenant_id", "source_id", "definition_id", "sub_status", "count"),
    ("tenant_id", "source_id", "definition_id", "sub_status"),
    add=True,
)
ADD_TO_TOTALS = Upsert(
    instance_totals, ("tenant_id", "sub_status", "count"), ("tenant_id", "sub_status"), add=True
)
#: …moving the catalog revision on, and reading the newest seq. Writers are serialized:
#: the newest seq is this transaction's. PostgreSQL delivers the notice to every listener
#: at commit.
_NEXT_CATALOG_REVISION = (
    catalog_revision.update()
    .values(revision=catalog_revision.c.revision + 1)
    .returning(catalog_revision.c.revision)
)
_NEWEST_SEQ = sa.select(sa.func.max(changes.c.seq))

Rows = list[dict[str, Any]]


async def run_last_statements(
    run: Run,
    dialect: Dialect,
    added: Sequence[tuple[Upsert, Rows]],
    changes_catalog: bool,
    pending_changes: Rows,
) -> int | None:
    """Add each upsert's rows (`added`), move the catalog revision on if
    `changes_catalog`, append `pending_changes`, through `run` (one trip); the newest
    change seq, None without changes."""
    if pending_changes and not dialect.is_sqlite:
        parts = [*added, (APPEND_CHANGES, pending_changes)]
        few = sum(len(rows) for _, rows in parts) <= ONE_STATEMENT_ROWS
        one = _as_one if few else _as_one_from_arrays
        [(last_seq, _)] = await run([one(dialect, parts, changes_catalog)])
        return int(last_seq)
    steps = [step for upsert, rows in added for step in dialect.bulk_statement(upsert).steps(rows)]
    if changes_catalog:
        steps.append(dialect.driver_form(_NEXT_CATALOG_REVISION).step({}))
    if not pending_changes:
        await run(steps)
        return None
    steps += dialect.bulk_statement(APPEND_CHANGES).steps(pending_changes)
    steps.append(dialect.driver_form(_NEWEST_SEQ).step({}))
    [(last_seq, *_)] = await run(steps)
    return int(last_seq)


def _as_one(dialect: Dialect, parts: Sequence[tuple[Upsert, Rows]], changes_catalog: bool) -> Step:
    """PostgreSQL: the statements as one, with its values. `parts`: the rows each upsert
    adds, the change rows last."""
    parts = [(upsert, rows) for upsert, rows in parts if rows]
    shape = tuple((upsert, len(rows)) for upsert, rows in parts)
    statement, where = _one_statement(shape, changes_catalog)
    driver_sql = dialect.driver_form(statement)
    rows_values = [driver_rows(upsert.table, upsert.columns, rows) for upsert, rows in parts]
    values = []
    for name in driver_sql.names:
        if name in where:
            at, number, column = where[name]
            values.append(rows_values[at][number][column])
        else:  # one the statement holds itself
            values.append(driver_sql.fixed[name])
    return Step(driver_sql.sql, tuple(values))


def _as_one_from_arrays(
    dialect: Dialect, parts: Sequence[tuple[Upsert, Rows]], changes_catalog: bool
) -> Step:
    """PostgreSQL: the statements as one, each upsert's rows given as one array per
    column. `parts`: the rows each upsert adds, the change rows last."""
    parts = [(upsert, rows) for upsert, rows in parts if rows]
    statement = _one_statement_from_arrays(tuple(upsert for upsert, _ in parts), changes_catalog)
    driver_sql = dialect.driver_form(statement)
    arrays: dict[str, list[Any]] = {}
    for at, (upsert, rows) in enumerate(parts):
        columns = driver_columns(upsert.table, upsert.columns, rows)
        arrays.update(zip((f"w{at}_{name}" for name in upsert.columns), columns, strict=True))
    return driver_sql.step(arrays)


@functools.cache
def _one_statement_from_arrays(
    upserts: tuple[Upsert, ...], changes_catalog: bool
) -> sa.Select[Any]:
    """Each of `upserts` a data-modifying CTE taking its rows as arrays (the change rows'
    last), whose seqs give the newest and its NOTIFY. Built once per set of upserts."""
    *writes, appending = (upsert.from_arrays(f"w{at}_") for at, upsert in enumerate(upserts))
    return _with_newest_seq(writes, appending, changes_catalog)


def _with_newest_seq(
    writes: Sequence[Insert], appending: Insert, changes_catalog: bool
) -> sa.Select[Any]:
    """The newest seq `appending` hands out and its NOTIFY, after `writes` and, with
    `changes_catalog`, the catalog revision's move, each a data-modifying CTE."""
    ctes = [statement.cte(f"w{at}") for at, statement in enumerate(writes)]
    if changes_catalog:
        ctes.append(_NEXT_CATALOG_REVISION.cte("next_revision"))
    appended = appending.returning(changes.c.seq).cte("appended")
    newest = sa.func.max(appended.c.seq)
    notify = sa.func.pg_notify(CHANGES_CHANNEL, sa.cast(newest, sa.Text))
    return sa.select(newest, notify).add_cte(*ctes)


@functools.cache
def _one_statement(
    shape: tuple[tuple[Upsert, int], ...], changes_catalog: bool
) -> tuple[sa.Select[Any], dict[str, tuple[int, int, int]]]:
    """Each upsert of `shape` (with its number of rows) a data-modifying CTE, the last one
    appending the change rows, whose seqs give the newest and its NOTIFY; and where each
    of its parameters, by name, takes its value: (upsert, row, column). Built once per
    shape: an API write takes one of a few dozen."""
    statements = [
        upsert.statement(
            [
                {name: sa.bindparam(f"w{at}_{number}_{name}") for name in upsert.columns}
                for number in range(rows)
            ],
            on_sqlite=False,
        )
        for at, (upsert, rows) in enumerate(shape)
    ]
    *writes, appending = statements
    where = {
        f"w{at}_{number}_{name}": (at, number, column)
        for at, (upsert, rows) in enumerate(shape)
        for number in range(rows)
        for column, name in enumerate(upsert.columns)
    }
    return _with_newest_seq(writes, appending, changes_catalog), where
