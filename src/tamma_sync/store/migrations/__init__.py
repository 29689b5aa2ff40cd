"""Alembic migrations, run programmatically on a connection the Store provides.

`tamma-sync migrate` and server start-up both call `upgrade_to_head`; there is no
alembic.ini to keep in sync. Alembic is imported only to migrate: a process that finds its
database at head (every start but the first after an upgrade) never loads it, which is a
third of a second less at start-up.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).parent
VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


def current_revision(connection: Connection) -> str | None:
    """The revision alembic recorded in the database (None before the first migration)."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    revision: str | None = connection.execute(
        sa.text(f"SELECT version_num FROM {VERSION_TABLE}")
    ).scalar()
    return revision


@functools.cache
def head_revision() -> str:
    """The newest migration. A revision is its file's four-digit prefix and names the one
    before it as its `down_revision` (tests/store/test_migrations.py checks that alembic
    finds the same head)."""
    return max(path.name[:4] for path in (SCRIPT_LOCATION / "versions").glob("[0-9]" * 4 + "_*.py"))
