"""The schema, once, for SQLite and PostgreSQL (SQLAlchemy Core).

Timestamps are epoch milliseconds in BIGINT columns, the unit of the API, so both
dialects store and compare them the same way. Rows that ELSA or a writer deleted stay as
tombstones (`deleted_at` set) until retention purges them; the partial indexes cover live
rows only, which is what every list query asks for.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s__%(column_0_N_name)s",
        "uq": "uq_%(table_name)s__%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Integer primary keys must be INTEGER on SQLite to alias the rowid (autoincrement).
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

LIVE = sa.text("deleted_at IS NULL")
CORRELATED = sa.text("deleted_at IS NULL AND correlation_id IS NOT NULL")
#: The sub-statuses of a running instance (not ended), as literals: a partial index is used
#: only by a query that repeats its WHERE exactly, values included.
RUNNING_SUB_STATUSES = ("Pending", "Executing", "Suspended", "Interrupted")
RUNNING = sa.text(
    "deleted_at IS NULL AND sub_status IN ("
    + ", ".join(f"'{value}'" for value in RUNNING_SUB_STATUSES)
    + ")"
)


def _live_index(name: str, *columns: str) -> sa.Index:
    return sa.Index(name, *columns, sqlite_where=LIVE, postgresql_where=LIVE)


definitions = sa.Table(
    "definitions",
    metadata,
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("definition_id", sa.String(255), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("description", sa.Text),
    sa.Column("activities", sa.JSON),
    sa.Column("connections", sa.JSON),
    sa.Column("variables", sa.JSON),
    sa.Column("version_id", sa.String(255)),
    sa.Column("is_published", sa.Boolean),
    sa.Column("is_latest", sa.Boolean),
    sa.Column("created_at", sa.BigInteger),
    sa.Column("synced_at", sa.BigInteger, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("source_id", sa.String(100)),
    sa.Column("content_hash", sa.String(32), nullable=False),
    sa.Column("deleted_at", sa.BigInteger),
    sa.Index("ix_definitions_source", "tenant_id", "source_id"),
    # Counting and listing live definitions without reading their activities.
    _live_index("ix_definitions_live", "tenant_id", "definition_id", "revision", "synced_at"),
)

#: Ids compare byte by byte on both databases (SQLite's BINARY; on PostgreSQL "C", whatever
#: the database's collation): pages break ties between equal times in the same order, and
#: the ids starting with a prefix are one range of the primary key (store/pages.py).
BYTEWISE_ID = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("id", BYTEWISE_ID, primary_key=True),
    sa.Column("definition_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(255)),
    sa.Column("sub_status", sa.String(20)),
    sa.Column("current_activity", sa.Text),
    sa.Column("variables", sa.JSON, nullable=False),
    sa.Column("correlation_id", sa.String(255)),
    sa.Column("name", sa.Text),
    sa.Column("incident_count", sa.Integer),
    sa.Column("definition_version", sa.Integer),
    sa.Column("definition_version_id", sa.String(255)),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("source_id", sa.String(100)),
    sa.Column("content_hash", sa.String(32), nullable=False),
    sa.Column("deleted_at", sa.BigInteger),
    _live_index("ix_instances_created", "tenant_id", "created_at", "id"),
    _live_index("ix_instances_updated", "tenant_id", "updated_at", "id"),
    _live_index(
        "ix_instances_definition_created", "tenant_id", "definition_id", "created_at", "id"
    ),
    _live_index(
        "ix_instances_definition_updated", "tenant_id", "definition_id", "updated_at", "id"
    ),
    _live_index("ix_instances_sub_status_created", "tenant_id", "sub_status", "created_at", "id"),
    _live_index("ix_instances_sub_status_updated", "tenant_id", "sub_status", "updated_at", "id"),
    # Where a definition's running instances are, counted from the index alone. Running
    # rows only: with every live row, SQLite would take it (more columns to match) for
    # pages filtered by definition and sub-status, and sort them all. `deleted_at`, NULL in
    # every entry, is there for SQLite, which (3.40 at least) does not take the index's
    # WHERE for the columns it names and would read every counted row.
    sa.Index(
        "ix_instances_running_activity",
        "tenant_id",
        "definition_id",
        "sub_status",
        "current_activity",
        "deleted_at",
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    ),
    # Only instances with a correlation id: most have none, and SQLite's sampled ANALYZE
    # reads an index's first entries, which were all NULL, and so judged the index useless.
    sa.Index(
        "ix_instances_correlation",
        "tenant_id",
        "correlation_id",
        sqlite_where=CORRELATED,
        postgresql_where=CORRELATED,
    ),
    # By creation, not by id: a walk's new rows land near one another instead of at random
    # places, each of which a write transaction rewrites a page for.
    _live_index("ix_instances_source", "tenant_id", "source_id", "created_at", "id"),
)

#: The change log: appended in the same transaction as every write that changes something.
#: `data` is the entity's wire JSON right after the change, so a reader replays exactly what
#: happened even when the entity changed again since.
changes = sa.Table(
    "changes",
    metadata,
    sa.Column("seq", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(255), nullable=False),
    sa.Column("entity", sa.String(20), nullable=False),
    sa.Column("entity_id", sa.String(255), nullable=False),
    sa.Column("op", sa.String(10), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("definition_id", sa.String(255)),
    sa.Column("sub_status", sa.String(20)),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_changes_entity", "tenant_id", "entity_id", "seq"),
    sqlite_autoincrement=True,
)

#: One row per ELSA source: its `SourceState` (cursor, health, counters) as JSON.
sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("source_id", sa.String(255), primary_key=True),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

#: Workers that report to tamma-sync: Tamma engines, and each ELSA source being synced.
engines = sa.Table(
    "engines",
    metadata,
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("kind", sa.String(50)),
    sa.Column("version", sa.String(100)),
    sa.Column("state", sa.String(100)),
    sa.Column("stats", sa.JSON, nullable=False),
    sa.Column("heartbeat_interval_seconds", sa.Float, nullable=False),
    sa.Column("registered_at", sa.BigInteger, nullable=False),
    sa.Column("last_heartbeat_at", sa.BigInteger, nullable=False),
)

#: Events engines report, in Tamma's shape; kept by count and age.
engine_events = sa.Table(
    "engine_events",
    metadata,
    sa.Column("seq", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(255), nullable=False),
    sa.Column("engine_id", sa.String(255), nullable=False),
    sa.Column("id", sa.String(255), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("issue_number", sa.BigInteger),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_engine_events_engine", "tenant_id", "engine_id", "timestamp"),
    sa.Index("ix_engine_events_recent", "tenant_id", "timestamp"),
    sa.UniqueConstraint("tenant_id", "engine_id", "id"),
    sqlite_autoincrement=True,
)

#: API keys: the secret is kept only as a SHA-256 hash (keys are long random strings, so a
#: fast hash is enough; there is nothing to brute-force).
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant_id", sa.String(255), nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger),
)

#: Live instances per (tenant, source, definition, sub-status), kept in step with every
#: instance write in the same transaction, so that counts — list totals, dashboard
#: breakdowns, per-source figures — never scan the instances. An empty string stands for
#: "no source" and "no sub-status" (primary-key columns cannot be NULL).
instance_counts = sa.Table(
    "instance_counts",
    metadata,
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("source_id", sa.String(100), primary_key=True),
    sa.Column("definition_id", sa.String(255), primary_key=True),
    sa.Column("sub_status", sa.String(20), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    # Covering, in the order of the dashboard's two GROUP BYs.
    sa.Index("ix_instance_counts_sub_status", "tenant_id", "sub_status", "count"),
    sa.Index("ix_instance_counts_definition", "tenant_id", "definition_id", "sub_status", "count"),
)

#: Live instances per (tenant, sub-status): the sums of `instance_counts` that unfiltered
#: and sub-status-filtered list totals and the dashboard summary read on every request,
#: kept in the same transactions so that they read a handful of rows instead of summing
#: one row per (source, definition, sub-status).
instance_totals = sa.Table(
    "instance_totals",
    metadata,
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("sub_status", sa.String(20), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

#: Instances started, finished and faulted per minute, quarter hour and hour
#: (`span_minutes` 1, 15 or 60), per (tenant, definition) and, with an empty definition
#: id, for all definitions: what the trend charts read, kept in the same transaction as
#: every instance write so that no chart scans instances or changes. `minute` is where
#: the span starts, in minutes since the epoch, of the source's own times (see
#: store/trends.py).
instance_trends = sa.Table(
    "instance_trends",
    metadata,
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("definition_id", sa.String(255), primary_key=True),
    sa.Column("span_minutes", sa.SmallInteger, primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),
    sa.Column("started", sa.Integer, nullable=False),
    sa.Column("finished", sa.Integer, nullable=False),
    sa.Column("faulted", sa.Integer, nullable=False),
)

#: One row: bumped by every write transaction that changes a definition or moves an
#: instance count, so a response built from the catalog — definitions and their counts —
#: can be cached until the revision moves on.
catalog_revision = sa.Table(
    "catalog_revision",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
)
