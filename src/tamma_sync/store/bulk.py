"""Statements compiled once and run through the driver: bulk writes (many rows to a
statement, arrays, COPY), the hottest reads, and the planner statistics that big writes
make stale."""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import operator
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tamma_sync.store.rows import chunks, json_text

#: Rows per statement in bulk writes, at most.
BULK_CHUNK = 1_000


class DriverSql(NamedTuple):
    """A statement as its driver runs it: the SQL text, and the names of the values it
    takes in their order. Run through the driver (`run_steps`), a statement skips
    SQLAlchemy's per-execution work — parameter and result processing, a third of the
    store's share of a page read — so the values it binds must be ready for the driver,
    and what it returns gets no conversion but the JSON decoding `as_mappings` does."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]
    """Values the statement itself holds (a literal `0`, say), by name."""
    columns: tuple[str, ...]
    """The keys of the columns a SELECT returns (unique, as SQLAlchemy names them)."""
    json_text_at: tuple[int, ...]
    """Where a SELECT returns a JSON column as its text: on SQLite (asyncpg decodes JSON
    itself, with the codec SQLAlchemy gives it)."""
    written: tuple[str, ...]
    """Whole numbers written into the text when it runs, not bound (`literal_execute`
    parameters: a page's LIMIT and OFFSET, `pages._rows_bound`)."""

    @classmethod
    def of(cls, statement: sa.ClauseElement, dialect: sa.Dialect) -> DriverSql:
        compiled = statement.compile(dialect=dialect)
        if compiled.post_compile_params:  # type: ignore[attr-defined]
            raise ValueError("an expanding IN is rendered by SQLAlchemy's execution only")
        literal = compiled.literal_execute_params  # type: ignore[attr-defined]
        written = tuple(sorted(bind.key for bind in literal))
        positions = compiled.positiontup or ()  # type: ignore[attr-defined]
        names = [name for name in positions if name not in written]
        selected = statement.selected_columns if isinstance(statement, sa.SelectBase) else None
        json_text_at = tuple(
            at
            for at, column in enumerate(selected if selected is not None else ())
            if dialect.name == "sqlite" and isinstance(column.type, sa.JSON)
        )
        # Only the values the statement holds itself, not None for each it must be given:
        # `step` merges them into every run's values (a single-row write takes eighty).
        binds = compiled.binds  # type: ignore[attr-defined]
        fixed = {name: value for name, value in compiled.params.items() if not binds[name].required}
        return cls(
            str(compiled),
            tuple(names),
            fixed,
            tuple(selected.keys()) if selected is not None else (),
            json_text_at,
            written,
        )

    def step(self, parameters: Mapping[str, Any]) -> Step:
        """This statement with the named values (more may be given than it takes)."""
        given = {**self.fixed, **parameters} if self.fixed else parameters
        values = tuple(map(given.__getitem__, self.names))  # no Python loop: 80 values a write
        sql = self.sql
        for name in self.written:  # a number only: never text from a request
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", str(operator.index(parameters[name])))
        return Step(sql, values)

    async def rows(
        self, conn: AsyncConnection, parameters: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """Run once with the named values (more may be given than it takes); its rows."""
        return await run_steps(conn, [self.step(parameters)])

    def as_mappings(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """This statement's rows as dicts by column name, JSON columns decoded, as
        SQLAlchemy's `mappings()` gives them."""
        found = []
        for row in rows:
            mapping = dict(zip(self.columns, row, strict=True))
            for at in self.json_text_at:
                name = self.columns[at]
                if mapping[name] is not None:
                    mapping[name] = orjson.loads(mapping[name])
            found.append(mapping)
        return found


class Step(NamedTuple):
    """One statement of a trip to the driver, with its values: a tuple, or with `many` a
    list of tuples (executemany). With `copy_into`, PostgreSQL's COPY of the rows `values`
    into a table's columns (`copy_step`; run through the pool's connections only,
    `run_steps`)."""

    sql: str
    values: Any
    many: bool = False
    copy_into: tuple[str, tuple[str, ...]] | None = None


def copy_step(table: sa.Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Step:
    """PostgreSQL: `rows` of `table` COPYed into it, values of `names`. COPYed, a page of
    1,000 new instances and their change rows cost the client 3.4 ms of CPU, against 12 ms
    given as one array per column (`Upsert.from_arrays`), and the database a fifth less
    time. Only for rows whose keys are not stored: a COPY cannot be told what to do on a
    conflict, and fails whole."""
    sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT binary)"
    return Step(sql, driver_rows(table, names, rows), copy_into=(table.name, tuple(names)))


#: What runs steps in one trip to the driver on a connection (see `run_steps`): the rows
#: of the last one.
Run = Callable[[Sequence[Step]], Awaitable[Sequence[Sequence[Any]]]]


async def run_steps(conn: AsyncConnection, steps: Sequence[Step]) -> Sequence[Sequence[Any]]:
    """Run statements in order in one trip to the driver; the rows of the last one.

    On SQLite that is one call on aiosqlite's thread instead of one per statement (and of
    the four SQLAlchemy's adapter takes for each: cursor, execute, fetch, close): under load
    each trip waits for the event loop's thread to let go of the GIL, and a write's last
    statements (counts, trends, change rows, newest seq) were most of its time. On
    PostgreSQL each statement is still a round trip, on the DBAPI cursor of SQLAlchemy's
    asyncpg adapter (`_through_dbapi_cursor`)."""
    if not steps:
        return []
    if conn.dialect.name == "sqlite":
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None, "a checked-out connection has its driver's"
        return await on_sqlite_thread(driver, conn.dialect, steps)
    rows: Sequence[Sequence[Any]] = []
    statements: list[Step] = []
    for step in steps:
        if step.copy_into is None:
            statements.append(step)
            continue
        if statements:
            await _through_dbapi_cursor(conn, statements)
            statements = []
        await _copy(conn, step)
        rows = []
    if statements:
        rows = await _through_dbapi_cursor(conn, statements)
    return rows


async def on_sqlite_thread(
    driver: Any, dialect: sa.Dialect, steps: Sequence[Step]
) -> Sequence[Sequence[Any]]:
    """The steps as one function queued to the thread of `driver`, an aiosqlite
    connection. aiosqlite has no public call for that: `_execute` (queue a function on the
    thread) and `_conn` (the sqlite3 connection, used on that thread only) are its own
    private names, pinned by the version in constraints.txt, and every SQLite statement
    the test suite runs through the pool goes through here."""

    def run() -> Sequence[Sequence[Any]]:
        cursor = driver._conn.cursor()
        try:
            return run_on_cursor(
                cursor, steps, sqlite3.Error, lambda step, exc: sqlite_error(step, exc, dialect)
            )
        finally:
            cursor.close()

    rows: Sequence[Sequence[Any]] = await driver._execute(run)
    return rows


def run_on_cursor(
    cursor: Any,
    steps: Sequence[Step],
    errors: type[Exception],
    as_error: Callable[[Step, Any], Exception],
) -> Sequence[Sequence[Any]]:
    """Run the steps on a DBAPI cursor; the rows of the last one. A driver's error (of
    `errors`) is raised as `as_error` makes it of the step that failed."""
    rows: Sequence[Sequence[Any]] = []
    for step in steps:
        try:
            if step.many:
                cursor.executemany(step.sql, step.values)
                rows = []
            else:
                cursor.execute(step.sql, step.values)
                rows = cursor.fetchall() if cursor.description is not None else []
        except errors as exc:
            raise as_error(step, exc) from exc
    return rows


def sqlite_error(step: Step, exc: sqlite3.Error, dialect: sa.Dialect) -> sa.exc.StatementError:
    """An SQLite error as SQLAlchemy raises it, so the API tells "database unavailable"
    from a bug the same way whichever way a statement ran."""
    return sa.exc.DBAPIError.instance(step.sql, step.values, exc, sqlite3.Error, dialect=dialect)


async def _through_dbapi_cursor(
    conn: AsyncConnection, steps: Sequence[Step]
) -> Sequence[Sequence[Any]]:
    """Run statements on the DBAPI cursor of SQLAlchemy's asyncpg adapter (which starts a
    transaction where one is due and translates asyncpg's errors), past the `Connection`'s
    execution: for a statement given as text, that builds the result's column map again on
    every run, about a third of a single-row read's time. Errors are raised as SQLAlchemy
    raises them, and a connection found dead is invalidated, as SQLAlchemy does."""

    def run(sync_conn: sa.Connection) -> Sequence[Sequence[Any]]:
        dbapi_connection = sync_conn.connection.dbapi_connection
        assert dbapi_connection is not None, "a checked-out connection has its driver's"
        cursor = dbapi_connection.cursor()

        def as_sqlalchemy_error(step: Step, exc: Any) -> Exception:
            error, dead = sqlalchemy_error(sync_conn.dialect, dbapi_connection, cursor, step, exc)
            if dead:
                sync_conn.invalidate(exc)
            return error

        try:
            errors = sync_conn.dialect.loaded_dbapi.Error
            return run_on_cursor(cursor, steps, errors, as_sqlalchemy_error)
        finally:
            cursor.close()

    return await conn.run_sync(run)


async def _copy(conn: AsyncConnection, step: Step) -> None:
    """A COPY step on the asyncpg connection under SQLAlchemy's adapter, as the adapter
    runs a statement: in the connection's transaction, begun if due, with errors raised
    as SQLAlchemy raises them and a dead connection invalidated. It uses the adapter's
    `_execute_mutex`, `_transaction` and `_start_transaction`, private names pinned by
    constraints.txt (the adapter has no COPY of its own)."""
    assert step.copy_into is not None, "a COPY step"
    table, columns = step.copy_into
    raw = await conn.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    driver = raw.driver_connection
    assert driver is not None, "a checked-out connection has its driver's"
    async with adapted._execute_mutex:
        if adapted._transaction is None:
            await adapted._start_transaction()
        try:
            await driver.copy_records_to_table(table, records=step.values, columns=columns)
        except Exception as exc:
            error, dead = adapter_error(conn.dialect, adapted, step, exc)
            if dead:
                await conn.invalidate(exc)
            raise error from exc


def adapter_error(
    dialect: sa.Dialect, dbapi_connection: Any, step: Step, exc: Exception
) -> tuple[Exception, bool]:
    """`exc`, raised by the asyncpg connection under SQLAlchemy's adapter
    `dbapi_connection` itself, as SQLAlchemy raises it (`sqlalchemy_error`), translated by
    the adapter first (by its `_handle_exception`, a private name pinned by
    constraints.txt, which always raises); and whether the connection is dead."""
    try:
        dbapi_connection._handle_exception(exc)
    except Exception as translated:
        return sqlalchemy_error(dialect, dbapi_connection, None, step, translated)
    raise AssertionError("the adapter's _handle_exception raises")


def sqlalchemy_error(
    dialect: sa.Dialect, dbapi_connection: Any, cursor: Any, step: Step, exc: Any
) -> tuple[Exception, bool]:
    """An error of `step` as SQLAlchemy's DBAPI adapter raised it, as SQLAlchemy raises it,
    and whether it means the connection is dead (then to be invalidated, as SQLAlchemy
    does)."""
    dead = dialect.is_disconnect(exc, dbapi_connection, cursor)
    error: Exception = sa.exc.DBAPIError.instance(
        step.sql,
        step.values,
        exc,
        dialect.loaded_dbapi.Error,
        dialect=dialect,
        connection_invalidated=dead,
    )
    return error, dead


class BulkStatement:
    """A compiled INSERT run through the driver with parameters built here (SQLAlchemy's
    per-row parameter processing is most of a sync batch's cost otherwise). On SQLite
    many rows to a statement, `VALUES (…), (…)`: the library runs one without the GIL,
    where an executemany takes it back after every row, and each time waits for the event
    loop's thread to let go of it (an initial walk ran a tenth faster). On PostgreSQL
    every row at once, one array per column (`Upsert.from_arrays`)."""

    def __init__(self, driver: DriverSql, table: sa.Table, *, on_sqlite: bool) -> None:
        self._sql = driver.sql
        self._names = driver.names
        self._table = table
        self._rows_at_once: _ValuesList | None = None
        if on_sqlite:
            self._rows_at_once = _ValuesList.of(driver.sql, len(driver.names))

    def steps(self, rows: Sequence[Mapping[str, Any]]) -> list[Step]:
        """The steps that insert `rows` (none for no rows)."""
        if self._rows_at_once is None:
            return [
                Step(self._sql, tuple(driver_columns(self._table, self._names, chunk)))
                for chunk in chunks(list(rows), BULK_CHUNK)
            ]
        values = driver_rows(self._table, self._names, rows)
        steps = []
        start = 0
        for length in statement_lengths(len(values), self._rows_at_once.rows_per_statement):
            steps.append(self._rows_at_once.step(values[start : start + length]))
            start += length
        return steps


def statement_lengths(rows: int, most: int) -> list[int]:
    """How many rows each of the statements that insert `rows` rows takes: `most`, then
    powers of two for the rest. The driver keeps each statement it ran prepared (about
    2 MB for 1,000 rows of instances), and each length is a statement of its own: with
    one for each length of the rest, a sync worker's peak memory over a million
    instances was 266 MiB, with lengths from these few sizes 239 MiB."""
    full, rest = divmod(rows, most)
    lengths = [most] * full
    while rest:
        lengths.append(1 << (rest.bit_length() - 1))
        rest -= lengths[-1]
    return lengths


class _ValuesList(NamedTuple):
    """SQLite: an INSERT of one row's values, `… VALUES (?, ?) …`, as a statement of many
    rows' values."""

    head: str
    one_row: str
    tail: str
    rows_per_statement: int

    @classmethod
    def of(cls, sql: str, names: int) -> _ValuesList:
        one_row = "(" + ", ".join("?" * names) + ")"
        head, found, tail = sql.partition(one_row)
        if not found or one_row in tail:
            raise ValueError(f"not one row's VALUES: {sql}")
        return cls(head, one_row, tail, max(1, min(BULK_CHUNK, _sqlite_variable_limit() // names)))

    def step(self, rows: Sequence[tuple[Any, ...]]) -> Step:
        sql = self.head + ", ".join(itertools.repeat(self.one_row, len(rows))) + self.tail
        return Step(sql, tuple(itertools.chain.from_iterable(rows)))


@functools.cache
def _sqlite_variable_limit() -> int:
    """How many values one SQLite statement may take, as this Python's library was built
    (32,766 since SQLite 3.32, 999 before)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        return conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


def driver_rows(
    table: sa.Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """Rows of `table` as the driver takes them: each a tuple of the values of `names`,
    JSON columns as their text (serialized by the store's own `json_text`)."""
    values_of, json_at = _row_layout(table, tuple(names))
    if not json_at:
        return [values_of(row) for row in rows]
    converted = []
    for row in rows:
        values = list(values_of(row))
        for at in json_at:
            if values[at] is not None:
                values[at] = json_text(values[at])
        converted.append(tuple(values))
    return converted


def driver_columns(
    table: sa.Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> list[list[Any]]:
    """Rows of `table` as one list of values per column of `names`, in their order, as
    a statement taking arrays takes them (`driver_rows`' values, column by column)."""
    _, json_at = _row_layout(table, tuple(names))
    columns = [list(map(operator.itemgetter(name), rows)) for name in names]
    for at in json_at:
        columns[at] = [json_text(value) if value is not None else None for value in columns[at]]
    return columns


@functools.cache
def _row_layout(
    table: sa.Table, names: tuple[str, ...]
) -> tuple[Callable[[Mapping[str, Any]], tuple[Any, ...]], tuple[int, ...]]:
    """What takes the values of `names` from a row, as a tuple (in C: a sync batch's rows
    pass through here once per row and column), and where among them JSON columns are."""
    json_columns = {column.name for column in table.columns if isinstance(column.type, sa.JSON)}
    get = operator.itemgetter(*names)
    values_of = get if len(names) > 1 else lambda row: (get(row),)
    return values_of, tuple(at for at, name in enumerate(names) if name in json_columns)


class TableStats:
    """Rows this process added per table since it last had the database ANALYZE it."""

    #: ANALYZE once a table grew by this share of the size it had at the last ANALYZE
    #: (quadrupled: PostgreSQL scales its estimates by a table's current size in between.
    #: At 0.2 an initial sync of 100,000 instances spent a sixth of its time analyzing; at
    #: 1.0 PostgreSQL analyzed each table four times, a fifth of its CPU during the walk,
    #: on the cores the walk needs: 180 ms for the instances at 95,000, 108 for changes)…
    GROWTH = 3.0
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
