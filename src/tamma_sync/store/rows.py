"""Rows as the store writes them: merging a write into what is stored, content hashes,
and turning rows back into domain models or their wire JSON."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa

from tamma_sync.models import (
    ENDED_SUB_STATUSES,
    Definition,
    DefinitionWrite,
    Instance,
    InstanceWrite,
    InvalidWrite,
    content_hash,
    dump_json,
    sub_status_from_legacy,
)

#: Rows per statement when reading or writing in bulk (well under SQLite's variable limit).
CHUNK = 500
_T = TypeVar("_T")

DEFINITION_CONTENT = (
    "name",
    "version",
    "description",
    "activities",
    "connections",
    "variables",
    "version_id",
    "is_published",
    "is_latest",
    "created_at",
)


def json_text(value: Any) -> str:
    return dump_json(value).decode()


def chunks(items: list[_T], size: int = CHUNK) -> Iterable[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_byte_order(items: Iterable[_T], key: Callable[[_T], str]) -> list[_T]:
    """`items` sorted by their text `key` code point by code point, which is UTF-8's byte
    order: SQLite's, and PostgreSQL's under the "C" collation. Lists ordered by a text key
    are sorted here, not by ORDER BY, which on PostgreSQL follows the database's collation
    (en-US puts "a" before "B", bytes put "B" first): one order on both databases."""
    return sorted(items, key=key)


def merge_definition(
    tenant_id: str, write: DefinitionWrite, live: dict[str, Any] | None
) -> dict[str, Any]:
    """The row a definition write leads to: the write's fields over the stored ones."""
    given = write.model_dump(exclude_none=True, exclude={"id"})
    if live is None and "name" not in given:
        raise InvalidWrite(f"definition {write.id!r} is new and has no name")
    base = {name: (live[name] if live is not None else None) for name in DEFINITION_CONTENT}
    base["source_id"] = live["source_id"] if live is not None else None
    return {"tenant_id": tenant_id, "definition_id": write.id, **base, **given}


def merge_instance(
    tenant_id: str,
    write: InstanceWrite,
    live: dict[str, Any] | None,
    now: int,
    source_id: str | None = None,
) -> dict[str, Any]:
    """The row an instance write leads to, with its content hash.

    `subStatus` comes from the writer or from its legacy `status`; `variables` left as None
    keep the stored ones (a sync that did not fetch them does not erase them); `createdAt`
    from the writer, else the stored one, else now; `updatedAt` from the writer, else now —
    and a write whose hash equals the stored one writes nothing.
    """
    sub_status = write.sub_status or sub_status_from_legacy(write.status)
    finished_at = write.finished_at
    if finished_at is None and sub_status in ENDED_SUB_STATUSES:
        already_ended = live is not None and live["sub_status"] in ENDED_SUB_STATUSES
        finished_at = live["finished_at"] if already_ended and live is not None else None
        finished_at = finished_at or write.updated_at or now
    content = {  # what the content hash covers: the row but its keys, source and tombstone
        "definition_id": write.definition_id,
        "status": write.status,
        "sub_status": sub_status.value if sub_status is not None else None,
        "current_activity": write.current_activity,
        "variables": (
            write.variables
            if write.variables is not None
            else (live["variables"] if live is not None else {})
        ),
        "correlation_id": write.correlation_id,
        "name": write.name,
        "incident_count": write.incident_count,
        "definition_version": write.definition_version,
        "definition_version_id": write.definition_version_id,
        "created_at": write.created_at or (live["created_at"] if live is not None else now),
        "updated_at": write.updated_at or now,
        "finished_at": finished_at,
    }
    return {
        "tenant_id": tenant_id,
        "id": write.id,
        **content,
        "source_id": source_id if source_id is not None else write.source_id,
        "deleted_at": None,
        "content_hash": content_hash(content),
    }


def definition_of(row: sa.RowMapping | dict[str, Any]) -> Definition:
    return Definition.model_validate({**row, "id": row["definition_id"]})


def instance_of(row: sa.RowMapping | dict[str, Any]) -> Instance:
    return Instance.model_validate(dict(row))


#: Instance field → wire key, to write change-log snapshots and pages without building models.
INSTANCE_WIRE_KEYS = {name: field.alias or name for name, field in Instance.model_fields.items()}
_INSTANCE_WIRE_PAIRS = tuple(INSTANCE_WIRE_KEYS.items())


def instance_wire(row: sa.RowMapping | Mapping[str, Any]) -> dict[str, Any]:
    """`Instance.model_validate(row).to_wire()`, without the model: the change log gets one
    snapshot per written row, so this is on the hot path of every sync batch."""
    return {key: value for name, key in _INSTANCE_WIRE_PAIRS if (value := row[name]) is not None}
