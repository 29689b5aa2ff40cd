"""PostgreSQL databases for tests, each as if just copied from the migrated template.

`CREATE DATABASE … TEMPLATE` costs PostgreSQL 0.15 to 0.4 s of CPU (it copies every
relation, its system catalogs' some 400 included), paid by every PostgreSQL test.
Emptying a used database costs 5 ms: so a test process keeps the databases its tests
used, and hands each one to the next test only once it is the template again, to the
letter:

- every other connection to it is ended, as `DROP DATABASE … WITH (FORCE)` would;
- its schema (relations, columns, indexes, constraints, triggers, functions, schemas) and
  the recorded migration must be the template's, or it is dropped instead of reused
  (a test may rename a table or add a trigger);
- every table is emptied, the template's rows (what migrations seed) are copied back and
  every sequence is set where the template's is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")
RunAsync = Callable[[Coroutine[Any, Any, T]], T]

#: One line describing everything a test could change in a database's structure.
SCHEMA_FINGERPRINT = """
SELECT md5(concat_ws('|',
  (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
  (SELECT string_agg(c.relname || ':' || c.relkind::text, ',' ORDER BY c.relname)
     FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace),
  (SELECT string_agg(c.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
                     || ':' || a.attnotnull || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
                     ',' ORDER BY c.relname, a.attnum)
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT string_agg(pg_get_indexdef(i.indexrelid), ',' ORDER BY 1)
     FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
     WHERE c.relnamespace = 'public'::regnamespace),
  (SELECT string_agg(pg_get_constraintdef(k.oid), ',' ORDER BY 1)
     FROM pg_constraint k WHERE k.connamespace = 'public'::regnamespace),
  (SELECT string_agg(t.tgname, ',' ORDER BY t.tgname)
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = 'public'::regnamespace),
  (SELECT string_agg(p.proname, ',' ORDER BY p.proname)
     FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace)
))
"""

#: The tables of `public`, in the order they can be emptied and refilled.
TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"

#: Where each sequence stands: `setval` arguments that put it back there.
SEQUENCES = """
SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value, start_value),
       last_value IS NOT NULL
FROM pg_sequences WHERE schemaname = 'public'
"""


@dataclass
class Template:
    """What a database copied from the template holds, read from the template once."""

    fingerprint: str
    rows: dict[str, list[asyncpg.Record]]
    sequences: list[tuple[str, int, bool]]

    @classmethod
    async def read(cls, connection: asyncpg.Connection) -> Template:
        tables = [name for (name,) in await connection.fetch(TABLES)]
        return cls(
            fingerprint=await connection.fetchval(SCHEMA_FINGERPRINT),
            rows={name: await connection.fetch(f'SELECT * FROM "{name}"') for name in tables},
            sequences=[tuple(row) for row in await connection.fetch(SEQUENCES)],
        )

    async def restore(self, connection: asyncpg.Connection) -> bool:
        """Make the database this one again; False if its structure is not the template's."""
        if await connection.fetchval(SCHEMA_FINGERPRINT) != self.fingerprint:
            return False
        async with connection.transaction():
            for name, rows in self.rows.items():
                await connection.execute(f'DELETE FROM "{name}"')
                if rows:
                    await connection.copy_records_to_table(name, records=rows)
            for sequence, value, called in self.sequences:
                await connection.execute(
                    "SELECT setval($1::regclass, $2, $3)", sequence, value, called
                )
        return True


class PostgresDatabases:
    """A test process's copies of the template database, reused as described above.

    `admin(statement)` runs a statement where databases are created and dropped;
    `dsn_for(name)` is the asyncpg DSN of database `name`; `run_async` runs a coroutine to
    its end from synchronous code."""

    def __init__(
        self,
        template: str,
        admin: Callable[[str], None],
        dsn_for: Callable[[str], str],
        run_async: RunAsync[Any],
    ) -> None:
        self.template = template
        self._admin = admin
        self._dsn_for = dsn_for
        self._run_async = run_async
        self._free: list[str] = []
        self._contents: Template = run_async(self._read_template())

    @contextmanager
    def lease(self) -> Iterator[str]:
        """The name of a database that is the template's copy, for the `with` block."""
        name = self._free.pop() if self._free else self._create()
        try:
            yield name
        finally:
            if self._reset(name):
                self._free.append(name)
            else:
                self._drop(name)

    def close(self) -> None:
        while self._free:
            self._drop(self._free.pop())

    def _create(self) -> str:
        name = f"tamma_test_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def _drop(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _reset(self, name: str) -> bool:
        """Make database `name` the template's copy again; False if it cannot be."""
        self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        restored: bool = self._run_async(self._restore(name))
        return restored

    async def _read_template(self) -> Template:
        connection = await asyncpg.connect(self._dsn_for(self.template), timeout=10)
        try:
            return await Template.read(connection)
        finally:
            await connection.close()

    async def _restore(self, name: str) -> bool:
        try:
            connection = await asyncpg.connect(self._dsn_for(name), timeout=10)
        except (OSError, asyncpg.PostgresError):
            return False
        try:
            return await self._contents.restore(connection)
        except asyncpg.PostgresError:
            return False
        finally:
            await connection.close()
