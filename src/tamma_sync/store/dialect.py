"""Where SQLite and PostgreSQL differ, behind one object: their INSERT … ON CONFLICT, how
a statement matches many ids, and statements compiled once for the driver."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tamma_sync.store.bulk import BulkStatement, DriverSql

_ID_ARRAY = postgresql.ARRAY(sa.String())

Insert = sqlite.Insert | postgresql.Insert


class Dialect:
    """One database's dialect, and the statements compiled for it (each once)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self._dialect = dialect
        self.is_sqlite = dialect.name == "sqlite"
        self._bulk_statements: dict[
            tuple[str, tuple[str, ...], tuple[str, ...], bool], BulkStatement
        ] = {}
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

    def bulk_statement(
        self,
        table: sa.Table,
        columns: list[str],
        conflict_key: list[str] | None = None,
        *,
        add: bool = False,
    ) -> BulkStatement:
        """An INSERT of `columns` (an upsert on `conflict_key`: the other columns are
        overwritten, or with `add` added to), compiled once."""
        cache_key = (table.name, tuple(columns), tuple(conflict_key or ()), add)
        found = self._bulk_statements.get(cache_key)
        if found is None:
            statement = self.insert(table).values({name: sa.bindparam(name) for name in columns})
            if conflict_key is not None:
                excluded = statement.excluded
                statement = statement.on_conflict_do_update(
                    index_elements=conflict_key,
                    set_={
                        name: table.c[name] + excluded[name] if add else excluded[name]
                        for name in columns
                        if name not in conflict_key
                    },
                )
            found = BulkStatement(self.driver_form(statement), table)
            self._bulk_statements[cache_key] = found
        return found

    def driver_form(self, statement: sa.ClauseElement) -> DriverSql:
        """The statement compiled for this database, once."""
        found = self._driver_sql.get(statement)
        if found is None:
            found = self._driver_sql[statement] = DriverSql.of(statement, self._dialect)
        return found
