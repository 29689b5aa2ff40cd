"""Pages of instances: the listing statements, built once per query shape.

Listing requests differ from one another in their values far more than in their shape, so
each shape (which filters, which order, keyset or offset, with or without the total) gets
one statement with bound parameters, built on first use: a request then only binds values,
instead of building the statement and having SQLAlchemy derive its cache key again. The
page selects exactly the wire fields, in wire order, so rows become wire dicts by position.
A page of several sub-statuses merges one index range per sub-status.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson
import sqlalchemy as sa

from tamma_sync.fields import MAX_ID_LENGTH
from tamma_sync.models import Instance, SubStatus, dump_json
from tamma_sync.store.rows import INSTANCE_WIRE_KEYS
from tamma_sync.store.tables import (
    RUNNING,
    RUNNING_SUB_STATUSES,
    catalog_revision,
    changes,
    instance_counts,
    instance_totals,
    instances,
)

OrderBy = Literal["createdAt", "updatedAt"]


@dataclass(frozen=True)
class InstanceQuery:
    """What a list of instances is filtered and ordered by, and which page of it."""

    definition_id: str | None = None
    sub_statuses: Sequence[SubStatus] | None = None
    correlation_id: str | None = None
    source_id: str | None = None
    # Epoch ms: the `_since` bounds are inclusive, the `_before` ones exclusive.
    created_since: int | None = None
    created_before: int | None = None
    updated_since: int | None = None
    updated_before: int | None = None
    id_prefix: str | None = None
    """Literal text the id starts with, case-sensitive (no wildcards)."""
    current_activity: str | None = None
    status_text: str | None = None
    """The `status` string exactly as written (the original's free text: "pending",
    "Running", "cancelled"…), case-sensitive."""
    order_by: OrderBy = "createdAt"
    descending: bool = False
    limit: int = 50
    offset: int = 0
    after: tuple[int, str] | None = None
    """Keyset position: the (order value, id) of the last row already seen."""
    with_total: bool = True


@dataclass(frozen=True)
class InstancePage:
    wire: list[dict[str, Any]]
    """The page's instances as the API sends them (camelCase, null fields omitted), ready
    for `dump_json`: the variables are JSON already (`orjson.Fragment`)."""
    total: int | None
    next_after: tuple[int, str] | None
    """Keyset position to continue from, or None when this page is the last."""

    @property
    def items(self) -> list[Instance]:
        return [Instance.model_validate_json(dump_json(item)) for item in self.wire]


class PageShape(NamedTuple):
    """What a listing statement depends on, apart from the values it binds."""

    order_by: OrderBy
    descending: bool
    keyset: bool
    skipping: bool
    """Whether an offset page skips rows (not the first page)."""
    definition: bool
    sub_statuses: int | None
    """How many sub-statuses a page may have (None: any)."""
    running_only: bool
    """Whether every sub-status asked for is a running one."""
    correlation: bool
    source: bool
    created_since: bool
    created_before: bool
    updated_since: bool
    updated_before: bool
    id_prefix: bool
    current_activity: bool
    status_text: bool
    with_total: bool

    @property
    def by_one_index(self) -> bool:
        """Whether one index serves the listing whatever its values: no filter but the
        tenant's and a definition's."""
        return self.sub_statuses is None and not (self.source or self.counts_rows)

    @classmethod
    def of(cls, query: InstanceQuery) -> PageShape:
        return cls(
            order_by=query.order_by,
            descending=query.descending,
            keyset=query.after is not None,
            skipping=query.after is None and query.offset > 0,
            definition=query.definition_id is not None,
            sub_statuses=None if query.sub_statuses is None else len(query.sub_statuses),
            running_only=query.sub_statuses is not None
            and all(value in RUNNING_SUB_STATUSES for value in query.sub_statuses),
            correlation=query.correlation_id is not None,
            source=query.source_id is not None,
            created_since=query.created_since is not None,
            created_before=query.created_before is not None,
            updated_since=query.updated_since is not None,
            updated_before=query.updated_before is not None,
            id_prefix=query.id_prefix is not None,
            current_activity=query.current_activity is not None,
            status_text=query.status_text is not None,
            with_total=query.with_total,
        )

    @property
    def sub_status_branches(self) -> int:
        """How many index ranges, one per sub-status, a page merges (0: one walk). Several
        sub-statuses are read one range each: walking the order and dropping the other
        sub-statuses reads every row when none of the wanted ones exists."""
        return self.sub_statuses if self.sub_statuses and self.sub_statuses > 1 else 0

    @property
    def counts_rows(self) -> bool:
        """Whether a filter is one the kept counts are not kept by, so the total must count
        the matching rows themselves."""
        return (
            self.correlation
            or self.created_since
            or self.created_before
            or self.updated_since
            or self.updated_before
            or self.id_prefix
            or self.current_activity
            or self.status_text
        )


#: What a page selects: the wire fields, in this order; the variables as the JSON text
#: they are stored as, passed through to the response instead of decoded and encoded again
#: (pages run through the driver, and asyncpg would decode them where sqlite3 does not).
_WIRE_COLUMNS = [
    sa.cast(instances.c.variables, sa.Text).label("variables")
    if name == "variables"
    else instances.c[name]
    for name in INSTANCE_WIRE_KEYS
]
_WIRE_KEY_ORDER = tuple(INSTANCE_WIRE_KEYS.values())
_ID_AT = list(INSTANCE_WIRE_KEYS).index("id")
_VARIABLES_KEY = INSTANCE_WIRE_KEYS["variables"]
_ORDER_VALUE_AT = {
    "createdAt": list(INSTANCE_WIRE_KEYS).index("created_at"),
    "updatedAt": list(INSTANCE_WIRE_KEYS).index("updated_at"),
}


def page_parameters(tenant_id: str, query: InstanceQuery) -> dict[str, Any]:
    """The values the shape's statements bind."""
    parameters: dict[str, Any] = {
        "tenant_id": tenant_id,
        "definition_id": query.definition_id,
        "correlation_id": query.correlation_id,
        "source_id": query.source_id,
        "created_since": query.created_since,
        "created_before": query.created_before,
        "updated_since": query.updated_since,
        "updated_before": query.updated_before,
        "id_prefix": query.id_prefix,
        "id_range_end": None if query.id_prefix is None else _after_every_id(query.id_prefix),
        "current_activity": query.current_activity,
        "status_text": query.status_text,
        "row_limit": query.limit + 1,  # one more than the page: is there a next one?
        "row_offset": 0 if query.after is not None else query.offset,
    }
    if query.sub_statuses is not None:
        parameters |= {
            f"sub_status_{n}": sub_status.value for n, sub_status in enumerate(query.sub_statuses)
        }
        parameters["branch_limit"] = parameters["row_limit"] + parameters["row_offset"]
    if query.after is not None:
        parameters["after_value"], parameters["after_id"] = query.after
    return parameters


def _after_every_id(prefix: str) -> str:
    """A text above every id (at most MAX_ID_LENGTH characters) that starts with `prefix`
    and below every other text above the prefix: the prefix, then the highest code point
    one more time than such an id can have characters after it."""
    return prefix + "\U0010ffff" * (MAX_ID_LENGTH + 1 - len(prefix))


def _rows_bound(shape: PageShape, name: str) -> sa.BindParameter[int]:
    """A page's LIMIT or OFFSET. For a listing one index serves (`by_one_index`) it is
    written into the statement's text when it runs (`DriverSql.step`): PostgreSQL plans a
    statement whose LIMIT is a parameter as if it read a tenth of its rows, so it never
    kept the plan it had made and planned every page again, about half of a page's cost
    there. Other filters' values may each call for a plan of their own: bound. Each value
    written makes a text of its own, which either database prepares once and keeps: a few
    per listing (a page read from an anchor starts fewer than `anchors.ANCHOR_STEP` rows
    past it; one read the long way, while writes keep moving the rows, is one more)."""
    return sa.bindparam(name, type_=sa.BigInteger, literal_execute=shape.by_one_index)


@functools.cache
def page_statement(shape: PageShape) -> sa.Select[Any]:
    """One page in a total order on (order column, id), the wire fields first and, when
    asked for, the total as the last column of every row."""
    order_column, key = _order_key(shape)
    branch_count = shape.sub_status_branches
    conditions = _filters(shape, by_sub_status=not branch_count)
    if shape.keyset:
        position = sa.tuple_(order_column, instances.c.id)
        bound = sa.tuple_(
            sa.bindparam("after_value", type_=sa.BigInteger),
            sa.bindparam("after_id", type_=sa.String),
        )
        conditions.append(position < bound if shape.descending else position > bound)
    rows = sa.select(*_WIRE_COLUMNS).where(*conditions).order_by(*_ordering(key, shape))
    if shape.skipping and not branch_count:
        return _skipping_page(shape, conditions, key)
    if branch_count:
        branches = [
            sa.select(
                rows.where(instances.c.sub_status == value)
                .limit(sa.bindparam("branch_limit", type_=sa.BigInteger))
                .subquery()
            )
            for value in _sub_status_values(branch_count)
        ]
        merged = sa.union_all(*branches).subquery()
        merged_key = tuple(merged.c[column.name] for column in key)
        rows = sa.select(*merged.c).order_by(*_ordering(merged_key, shape))
    statement = rows.limit(_rows_bound(shape, "row_limit")).offset(_rows_bound(shape, "row_offset"))
    return _with_total(statement, shape)


def _skipping_page(
    shape: PageShape, conditions: list[Condition], key: tuple[sa.Column[Any], ...]
) -> sa.Select[Any]:
    """An offset page past the first: the rows it skips are walked in an index that holds
    the order and the filters (`tables._live_index`: no table row read for them), and only
    the page's own rows are read whole. (OFFSET over whole rows read every skipped one: a
    page 100,000 rows deep read 100,000 rows.)"""
    keys = (
        sa.select(instances.c.tenant_id, instances.c.id)
        .where(*conditions)
        .order_by(*_ordering(key, shape))
        .limit(_rows_bound(shape, "row_limit"))
        .offset(_rows_bound(shape, "row_offset"))
        .subquery("page_keys")
    )
    statement = (
        sa.select(*_WIRE_COLUMNS)
        .join_from(
            instances,
            keys,
            sa.and_(instances.c.tenant_id == keys.c.tenant_id, instances.c.id == keys.c.id),
        )
        .order_by(*_ordering(key, shape))
    )
    return _with_total(statement, shape)


#: What moves every row's position in some listing: an instance or definition written
#: (each records a change) or live instances purged (which moves the kept counts, and so
#: the catalog revision). Read in the same statement as what it vouches for.
_DATA_REVISION = (
    sa.select(sa.func.coalesce(sa.func.max(changes.c.seq), 0)).scalar_subquery(),
    sa.select(catalog_revision.c.revision).scalar_subquery(),
)


@functools.cache
def anchor_statement(shape: PageShape) -> sa.Select[Any]:
    """The (order value, id) of the row `anchor_offset` rows into a listing, and the data's
    revision (`_DATA_REVISION`) it holds for."""
    order_column, key = _order_key(shape)
    return (
        sa.select(*_DATA_REVISION, order_column, instances.c.id)
        .where(*_filters(shape))
        .order_by(*_ordering(key, shape))
        .limit(1)
        .offset(sa.bindparam("anchor_offset", type_=sa.BigInteger))
    )


@functools.cache
def anchored_page_statement(shape: PageShape, counting: bool) -> sa.Select[Any]:
    """An offset page walked from an anchor (`anchor_statement`) instead of from the first
    row: `row_offset` counts from the anchor's row. No row at all unless the data is still
    at the anchor's revision (`changes_seq`, `catalog_revision`). `counting`: with the
    total as the last column of every row (`_with_total`)."""
    order_column, key = _order_key(shape)
    position = sa.tuple_(order_column, instances.c.id)
    anchor = sa.tuple_(
        sa.bindparam("anchor_value", type_=sa.BigInteger),
        sa.bindparam("anchor_id", type_=sa.String),
    )
    changes_seq, catalog = _DATA_REVISION
    statement = (
        sa.select(*_WIRE_COLUMNS)
        .where(
            *_filters(shape),
            position <= anchor if shape.descending else position >= anchor,
            changes_seq == sa.bindparam("changes_seq", type_=sa.BigInteger),
            catalog == sa.bindparam("catalog_revision", type_=sa.BigInteger),
        )
        .order_by(*_ordering(key, shape))
        .limit(_rows_bound(shape, "row_limit"))
        .offset(_rows_bound(shape, "row_offset"))
    )
    return _with_total(statement, shape) if counting else statement


def page_row_position(shape: PageShape, row: Sequence[Any]) -> tuple[int, str]:
    """Where a page's row stands in its listing: its (order value, id)."""
    return row[_ORDER_VALUE_AT[shape.order_by]], row[_ID_AT]


def _order_key(shape: PageShape) -> tuple[sa.Column[int], tuple[sa.Column[Any], ...]]:
    order_column = (
        instances.c.created_at if shape.order_by == "createdAt" else instances.c.updated_at
    )
    return order_column, (order_column, instances.c.id)


def _with_total(statement: sa.Select[Any], shape: PageShape) -> sa.Select[Any]:
    """The page, with the total as the last column of every row when asked for."""
    if shape.with_total:
        return statement.add_columns(count_statement(shape).scalar_subquery())
    return statement


def _ordering(
    key: tuple[sa.ColumnElement[Any], ...], shape: PageShape
) -> list[sa.UnaryExpression[Any]]:
    return [column.desc() if shape.descending else column.asc() for column in key]


@functools.cache
def count_statement(shape: PageShape) -> sa.Select[Any]:
    """How many instances match: from the kept totals or counts when the filters are the
    ones they are kept by (sub-status; definition, source), else by counting rows."""
    if shape.counts_rows:
        return sa.select(sa.func.count()).where(*_filters(shape))
    kept = instance_counts if shape.definition or shape.source else instance_totals
    conditions = [kept.c.tenant_id == sa.bindparam("tenant_id", type_=sa.String)]
    if shape.definition:
        conditions.append(
            instance_counts.c.definition_id == sa.bindparam("definition_id", type_=sa.String)
        )
    if shape.source:  # never "" (no source) here: an empty sourceId is no filter
        conditions.append(instance_counts.c.source_id == sa.bindparam("source_id", type_=sa.String))
    if shape.sub_statuses is not None:
        conditions.append(_one_of_sub_statuses(kept.c.sub_status, shape.sub_statuses))
    # PostgreSQL sums bigints into numeric, which arrives as Decimal.
    total = sa.cast(sa.func.coalesce(sa.func.sum(kept.c.count), 0), sa.BigInteger)
    return sa.select(total).where(*conditions)


#: A WHERE condition: an expression, or SQL text a partial index's condition is written in.
Condition = sa.ColumnElement[bool] | sa.TextClause


def _filters(shape: PageShape, *, by_sub_status: bool = True) -> list[Condition]:
    conditions: list[Condition] = [
        instances.c.tenant_id == sa.bindparam("tenant_id", type_=sa.String),
        instances.c.deleted_at.is_(None),
    ]
    if shape.definition:
        conditions.append(
            instances.c.definition_id == sa.bindparam("definition_id", type_=sa.String)
        )
    if shape.sub_statuses is not None and by_sub_status:
        conditions.append(_one_of_sub_statuses(instances.c.sub_status, shape.sub_statuses))
    if shape.correlation:
        conditions.append(
            instances.c.correlation_id == sa.bindparam("correlation_id", type_=sa.String)
        )
    if shape.source:
        conditions.append(instances.c.source_id == sa.bindparam("source_id", type_=sa.String))
    if shape.created_since:
        conditions.append(
            instances.c.created_at >= sa.bindparam("created_since", type_=sa.BigInteger)
        )
    if shape.created_before:
        conditions.append(
            instances.c.created_at < sa.bindparam("created_before", type_=sa.BigInteger)
        )
    if shape.updated_since:
        conditions.append(
            instances.c.updated_at >= sa.bindparam("updated_since", type_=sa.BigInteger)
        )
    if shape.updated_before:
        conditions.append(
            instances.c.updated_at < sa.bindparam("updated_before", type_=sa.BigInteger)
        )
    if shape.id_prefix:
        conditions.append(_id_starts_with())
    if shape.current_activity:
        conditions.append(
            instances.c.current_activity == sa.bindparam("current_activity", type_=sa.String)
        )
        if shape.running_only:
            # True already, said as `ix_instances_running_activity` says it: a planner uses
            # a partial index only where the query repeats its condition (SQLite literally),
            # and bound sub-statuses do not.
            conditions.append(RUNNING)
    if shape.status_text:
        conditions.append(instances.c.status == sa.bindparam("status_text", type_=sa.String))
    return conditions


def _id_starts_with() -> sa.ColumnElement[bool]:
    """`id` starts with the bound prefix, literally and case-sensitively, with the same
    rows on both databases: ids compare byte by byte on both (tables.BYTEWISE_ID), and
    UTF-8's byte order is code point order, so the ids starting with a prefix are exactly
    those from the prefix up to `id_range_end` (`page_parameters`): one range of the
    primary key. LIKE would need its wildcards escaped and is case-insensitive on SQLite."""
    return sa.and_(
        instances.c.id >= sa.bindparam("id_prefix", type_=sa.String),
        instances.c.id < sa.bindparam("id_range_end", type_=sa.String),
    )


def _sub_status_values(count: int) -> list[sa.BindParameter[str]]:
    """One bound value per sub-status of the shape: an "expanding" IN would have SQLAlchemy
    render the statement again on every request."""
    return [sa.bindparam(f"sub_status_{n}", type_=sa.String) for n in range(count)]


def _one_of_sub_statuses(column: sa.Column[Any], count: int) -> sa.ColumnElement[bool]:
    return column.in_(_sub_status_values(count)) if count else sa.false()


def page_of(
    rows: Sequence[Sequence[Any]], query: InstanceQuery
) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
    """The wire dicts of a page's rows (null fields left out), and the keyset position to
    continue from when there is a next page."""
    wire = [
        # Not strict: a row may carry the total after the wire fields.
        {key: value for key, value in zip(_WIRE_KEY_ORDER, row, strict=False) if value is not None}
        for row in rows[: query.limit]
    ]
    for item in wire:
        item[_VARIABLES_KEY] = orjson.Fragment(item[_VARIABLES_KEY])
    next_after = None
    if len(rows) > query.limit:
        last = rows[query.limit - 1]
        next_after = (last[_ORDER_VALUE_AT[query.order_by]], last[_ID_AT])
    return wire, next_after
