"""Reading requests the way ELSA's FastEndpoints binding does.

Field names are case-insensitive (query and JSON alike), collections come as repeated
query keys or JSON arrays, enums parse case-insensitively from names or integers, and
numbers may be JSON strings (ASP.NET's web defaults). Binding failures become FastEndpoints'
400 body; endpoint validation failures go to its general-errors bucket.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import IntEnum
from typing import Final, TypeVar

import orjson
from starlette.datastructures import QueryParams

from tamma_sync.simulator.catalog import JSON
from tamma_sync.simulator.clock import parse_timestamp
from tamma_sync.simulator.definitions import DefinitionQuery, VersionFilter, parse_version_options
from tamma_sync.simulator.instances import (
    Column,
    InstanceQuery,
    Operator,
    Order,
    SubStatus,
    TimestampFilter,
)

E = TypeVar("E", bound=IntEnum)
_INTEGER: Final = re.compile(r"\s*[+-]?\d+\s*")
GENERAL_ERRORS: Final = "generalErrors"
_DEFAULT_TIMESTAMP: Final = "0001-01-01T00:00:00+00:00"


class InternalError(Exception):
    """Where ELSA throws an unhandled exception: a 500 with an empty body."""


class BadRequest(Exception):
    """A 400 answer in FastEndpoints' error shape."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors

    def body(self) -> dict[str, JSON]:
        """`{"statusCode":400,"message":"One or more errors occurred!","errors":{...}}`."""
        errors: dict[str, JSON] = {key: list(value) for key, value in self.errors.items()}
        return {"statusCode": 400, "message": "One or more errors occurred!", "errors": errors}


class Fields:
    """The fields of one request, looked up case-insensitively."""

    def __init__(self, values: dict[str, list[object]], *, from_json: bool) -> None:
        self._values = values
        self._from_json = from_json

    @classmethod
    def from_query(cls, params: QueryParams) -> Fields:
        """Query-string fields (repeated keys collect into lists)."""
        values: dict[str, list[object]] = {}
        for key, value in params.multi_items():
            values.setdefault(key.lower(), []).append(value)
        return cls(values, from_json=False)

    @classmethod
    def from_body(cls, body: bytes) -> Fields:
        """JSON-body fields; an empty body is an empty object."""
        if not body.strip():
            return cls({}, from_json=True)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadRequest({"serializerErrors": [f"Invalid JSON: {error}"]}) from error
        if not isinstance(data, dict):
            raise BadRequest({"serializerErrors": ["The JSON value must be an object."]})
        values: dict[str, list[object]] = {}
        for key, value in data.items():
            values[str(key).lower()] = [value]
        return cls(values, from_json=True)

    def fail(self, name: str, raw: object, type_name: str) -> BadRequest:
        """The binding error for a field that does not convert."""
        if self._from_json:
            message = f"The JSON value could not be converted to {type_name}. Path: $.{name}"
            return BadRequest({"serializerErrors": [message]})
        return BadRequest({name: [f"Value [{raw}] is not valid for a [{type_name}] property!"]})

    def raw(self, name: str) -> object | None:
        """The first value of a field (None if absent or null)."""
        values = self._values.get(name.lower())
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        """A string field."""
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        raise self.fail(name, value, "String")

    def integer(self, name: str) -> int | None:
        """An int field (JSON numbers or numeric strings)."""
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            return int(value)
        raise self.fail(name, value, "Nullable`1[Int32]")

    def boolean(self, name: str) -> bool | None:
        """A bool field (JSON true/false; "true"/"false" in a query string)."""
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        if not self._from_json and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.fail(name, value, "Nullable`1[Boolean]")

    def enum(self, name: str, kind: type[E]) -> E | None:
        """An enum field: a member name in any case, or its number."""
        value = self.raw(name)
        if value is None:
            return None
        member = parse_enum(kind, value)
        if member is None:
            raise self.fail(name, value, kind.__name__)
        return member

    def strings(self, name: str) -> list[str] | None:
        """A string collection: repeated query keys or a JSON array."""
        values = self._values.get(name.lower())
        if not values:
            return None
        if self._from_json:
            (value,) = values
            if value is None:
                return None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise self.fail(name, value, "String[]")
            return [str(v) for v in value]
        return [str(v) for v in values]

    def objects(self, name: str) -> list[dict[str, object]] | None:
        """A JSON array of objects, keys lower-cased (JSON bodies only)."""
        if not self._from_json:
            return None
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(name, value, "List`1[TimestampFilter]")
        return [{str(k).lower(): v for k, v in item.items()} for item in value]


def parse_enum(kind: type[E], value: object) -> E | None:
    """`Enum.TryParse(ignoreCase: true)`: a name in any case or a defined number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        value = int(value)
    if isinstance(value, int):
        return kind(value) if value in kind._value2member_map_ else None
    if isinstance(value, str):
        lowered = value.strip().lower()
        return next((m for m in kind if m.name.lower() == lowered), None)
    return None


class _Status(IntEnum):
    """ELSA's WorkflowStatus, for parsing only."""

    Running = 0
    Finished = 1


_WORKFLOW_STATUS: Final = {
    _Status.Running: frozenset(s for s in SubStatus if not s.ended),
    _Status.Finished: frozenset(s for s in SubStatus if s.ended),
}


class _Direction(IntEnum):
    Ascending = 0
    Descending = 1


class _DefinitionOrder(IntEnum):
    Created = 0
    Name = 1
    Version = 2


def version_filter(text: str | None) -> VersionFilter | None:
    """`versionOptions`: exact-case tokens or an integer; anything else is ELSA's 500."""
    if text is None:
        return None
    try:
        return parse_version_options(text)
    except ValueError as error:
        raise InternalError(str(error)) from error


def definition_query(fields: Fields) -> DefinitionQuery:
    """Bind a workflow-definitions list request."""
    order = _or(fields.enum("orderBy", _DefinitionOrder), _DefinitionOrder.Name)
    default = _Direction.Ascending if order is _DefinitionOrder.Name else _Direction.Descending
    direction = _or(fields.enum("orderDirection", _Direction), default)
    definition_ids, ids = fields.strings("definitionIds"), fields.strings("ids")
    return DefinitionQuery(
        version_filter=version_filter(fields.text("versionOptions")),
        definition_ids=None if not definition_ids else frozenset(definition_ids),
        ids=None if not ids else frozenset(ids),
        materializer=fields.text("materializer"),
        search_term=fields.text("searchTerm"),
        is_system=fields.boolean("isSystem"),
        order_by=order.name,
        descending=direction is _Direction.Descending,
        page=fields.integer("page"),
        page_size=fields.integer("pageSize"),
    )


def instance_query(fields: Fields, server_offset_ticks: int) -> InstanceQuery:
    """Bind and validate a workflow-instances list request (ELSA 3.7.1 rules and messages).

    Binding errors (wrong types, bad timestamps) answer first; then `statuses` and
    `subStatuses` values; then page, page size and timestamp-filter columns.
    """
    page, page_size = fields.integer("page"), fields.integer("pageSize")
    status, sub_status = fields.enum("status", _Status), fields.enum("subStatus", SubStatus)
    order = _or(fields.enum("orderBy", Order), Order.Created)
    direction = fields.enum("orderDirection", _Direction)
    bound = [
        _bind_filter(fields, raw, server_offset_ticks)
        for raw in fields.objects("timestampFilters") or []
    ]
    query = InstanceQuery(
        page=page,
        page_size=page_size,
        search_term=fields.text("searchTerm"),
        definition_id=fields.text("definitionId"),
        definition_ids=tuple(fields.strings("definitionIds") or ()) or None,
        correlation_id=fields.text("correlationId"),
        name=fields.text("name"),
        version=fields.integer("version"),
        has_incidents=fields.boolean("hasIncidents"),
        is_system=fields.boolean("isSystem"),
        order=order,
        descending=_or(direction, _default_direction(order)) is _Direction.Descending,
    )
    errors: list[str] = []
    allowed = frozenset(SubStatus)
    if status is not None:
        allowed &= _WORKFLOW_STATUS[status]
    if sub_status is not None:
        allowed &= {sub_status}
    allowed &= _parse_statuses(fields.strings("statuses"), _Status, errors, _WORKFLOW_STATUS.get)
    allowed &= _parse_statuses(fields.strings("subStatuses"), SubStatus, errors, _only)
    filters = _validate(page, page_size, bound, errors)
    if errors:
        raise BadRequest({GENERAL_ERRORS: errors})
    sub_statuses = None if allowed == frozenset(SubStatus) else allowed
    return replace(query, sub_statuses=sub_statuses, timestamp_filters=tuple(filters))


def _or(value: E | None, default: E) -> E:
    """`value ?? default` (an IntEnum member 0 is falsy, so `or` will not do)."""
    return default if value is None else value


def _default_direction(order: Order) -> _Direction:
    return _Direction.Ascending if order is Order.Name else _Direction.Descending


def _only(sub_status: SubStatus) -> frozenset[SubStatus]:
    return frozenset({sub_status})


def _parse_statuses(
    texts: Sequence[str] | None,
    kind: type[E],
    errors: list[str],
    expand: Callable[[E], frozenset[SubStatus] | None],
) -> frozenset[SubStatus]:
    """`ParseEnumStrings`: stops at the first invalid value with `Invalid enum value 'x'.`"""
    if not texts:
        return frozenset(SubStatus)
    allowed: set[SubStatus] = set()
    for text in texts:
        member = parse_enum(kind, text)
        if member is None:
            errors.append(f"Invalid enum value '{text}'.")
            break
        allowed |= expand(member) or frozenset()
    return frozenset(allowed)


_Bound = tuple[object, Operator, int, tuple[int, int] | None]


def _bind_filter(fields: Fields, raw: dict[str, object], server_offset_ticks: int) -> _Bound:
    """JSON binding of one timestamp filter (a missing timestamp is DateTimeOffset's
    default, 0001-01-01T00:00:00+00:00, which is a midnight)."""
    operator = parse_enum(Operator, raw.get("operator", 0))
    if operator is None:
        raise fields.fail(
            "timestampFilters.operator", raw.get("operator"), "TimestampFilterOperator"
        )
    timestamp = raw.get("timestamp", _DEFAULT_TIMESTAMP)
    if not isinstance(timestamp, str):
        raise fields.fail("timestampFilters.timestamp", timestamp, "DateTimeOffset")
    try:
        parsed = parse_timestamp(timestamp, server_offset_ticks)
    except ValueError as error:
        raise fields.fail("timestampFilters.timestamp", timestamp, "DateTimeOffset") from error
    column = raw.get("column")
    if column is not None and not isinstance(column, str):
        raise fields.fail("timestampFilters.column", column, "String")
    return column, operator, parsed.ticks, parsed.whole_day


def _validate(
    page: int | None, page_size: int | None, bound: list[_Bound], errors: list[str]
) -> list[TimestampFilter]:
    """ELSA's ValidateInput: the first failure only (its messages, typo included)."""
    if page is not None and page < 0:
        errors.append("Page must be greater than or equal to 1.")
        return []
    if page_size is not None and page_size < 1:
        errors.append("Page size must be greater than or equal to 1.")
        return []
    filters: list[TimestampFilter] = []
    for column, operator, ticks, whole_day in bound:
        if not isinstance(column, str) or not column.strip():
            errors.append("Column must be specified.")
            return []
        if column not in Column.__members__:
            errors.append(f"Invalid column '{column}'.")
            return []
        filters.append(TimestampFilter(Column[column], operator, ticks, whole_day))
    return filters


def journal_window(fields: Fields) -> tuple[int, int]:
    """Journal paging: page+pageSize if both, else skip+take if both, else page 0 of 100."""
    page, page_size = fields.integer("page"), fields.integer("pageSize")
    if page is not None and page_size is not None:
        return page * page_size, page_size
    skip, take = fields.integer("skip"), fields.integer("take")
    if skip is not None and take is not None:
        return skip, take
    return 0, 100
