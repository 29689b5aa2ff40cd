"""Where SQLite and PostgreSQL differ, behind one object: their INSERT … ON CONFLICT, how
a statement matches many ids, and statements compiled once for the driver."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tamma_sync.store.bulk import BulkStatement, DriverSql

_ID_ARRAY = postgresql.ARRAY(sa.String())

Insert = sqlite.Insert | postgresql.Insert


class Upsert(NamedTuple):
    """An INSERT of `columns` into `table`; with a conflict `key`, an upsert: the other
    columns are overwritten, or with `add` added to."""

    table: sa.Table
    columns: tuple[str, ...]
    key: tuple[str, ...] | None = None
    add: bool = False

    def sqlite_statement(self) -> Insert:
        """SQLite: this upsert as a statement inserting one row, its values named by column.

        A plain insert (no `key`) is `INSERT OR ROLLBACK`: a row it cannot insert
        fails the whole write, as its callers want, and SQLite then keeps no statement
        journal, the copy of every page the statement changes it would need to undo just
        that statement. For a sync batch's thousands of rows the journal went to a
        temporary file: 800 MB over an initial walk of 100,000 instances, 8 % of its time.
        (An upsert keeps it: its DO UPDATE may fail midway.)"""
        statement = sqlite.insert(self.table).values(
            {name: sa.bindparam(name) for name in self.columns}
        )
        if self.key is None:
            statement = statement.prefix_with("OR ROLLBACK")
        return self._on_conflict(statement)

    def from_arrays(
        self, prefix: str = "", *, when: sa.ColumnElement[bool] | None = None
    ) -> Insert:
        """PostgreSQL: this upsert as a statement inserting the rows given as one array
        per column (named `prefix` + the column's name), in their order; with `when`, only
        if it holds. One statement for a batch, where an executemany is one per row (a
        fifth more rows a second on the instances): the rows must not repeat a key, as no
        caller's do."""
        arrays = [
            sa.bindparam(prefix + name, type_=postgresql.ARRAY(self.table.c[name].type))
            for name in self.columns
        ]
        given = (
            sa.func.unnest(*arrays)
            .table_valued(*self.columns, with_ordinality="given_order")
            .render_derived(name="given")
        )
        return self._insert_given(given, when)

    def from_values(
        self, prefix: str, rows: int, *, when: sa.ColumnElement[bool] | None = None
    ) -> Insert:
        """PostgreSQL: `from_arrays` for exactly `rows` rows given as single values
        (`prefix` + the row's number + `_` + the column's name): a statement per number of
        rows, each of whose parameters costs the driver a fraction of an array's."""
        columns = [sa.column(name, self.table.c[name].type) for name in self.columns]
        given = sa.values(*columns, sa.column("given_order", sa.Integer), name="given").data(
            [
                (
                    *(
                        sa.bindparam(f"{prefix}{number}_{name}", type_=self.table.c[name].type)
                        for name in self.columns
                    ),
                    sa.literal_column(str(number), sa.Integer),
                )
                for number in range(rows)
            ]
        )
        return self._insert_given(given, when)

    def _insert_given(self, given: sa.FromClause, when: sa.ColumnElement[bool] | None) -> Insert:
        """Insert the rows of `given` (this upsert's columns and `given_order`), in order."""
        rows = sa.select(*(given.c[name] for name in self.columns)).order_by(given.c.given_order)
        if when is not None:
            rows = rows.where(when)
        return self._on_conflict(postgresql.insert(self.table).from_select(self.columns, rows))

    def _on_conflict(self, statement: Insert) -> Insert:
        if self.key is None:
            return statement
        excluded = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=list(self.key),
            set_={
                name: self.table.c[name] + excluded[name] if self.add else excluded[name]
                for name in self.columns
                if name not in self.key
            },
        )


class Dialect:
    """One database's dialect, and the statements compiled for it (each once)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self._dialect = dialect
        self.is_sqlite = dialect.name == "sqlite"
        self._bulk_statements: dict[Upsert, BulkStatement] = {}
        self._driver_sql: dict[sa.ClauseElement, DriverSql] = {}

    def insert(self, table: sa.Table) -> Insert:
        """An INSERT that can be told what to do on a conflict."""
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    def ids_match(self, id_column: sa.Column[str], ids: Sequence[str]) -> sa.ColumnElement[bool]:
        """`id_column IN ids`. PostgreSQL gets the ids as one array parameter: one statement
        for any number of ids, planned once, instead of a list of hundreds of parameters."""
        if self.is_sqlite:
            return id_column.in_(ids)
        return id_column == sa.any_(sa.bindparam("ids", list(ids), type_=_ID_ARRAY))

    def bulk_statement(self, upsert: Upsert) -> BulkStatement:
        """`upsert` as a statement for many rows, compiled once (`BulkStatement`)."""
        found = self._bulk_statements.get(upsert)
        if found is None:
            statement = upsert.sqlite_statement() if self.is_sqlite else upsert.from_arrays()
            driver_sql = self.driver_form(statement)
            found = BulkStatement(driver_sql, upsert.table, on_sqlite=self.is_sqlite)
            self._bulk_statements[upsert] = found
        return found

    def driver_form(self, statement: sa.ClauseElement) -> DriverSql:
        """The statement compiled for this database, once."""
        found = self._driver_sql.get(statement)
        if found is None:
            found = self._driver_sql[statement] = DriverSql.of(statement, self._dialect)
        return found
