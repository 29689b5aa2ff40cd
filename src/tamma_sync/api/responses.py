"""JSON bodies written straight from wire dicts and kept JSON, for the big lists.

A page of instances or the list of definitions holds thousands of values; building a model
per row only for FastAPI to validate and serialize it again costs more than the query. The
routes that answer with these still declare `response_model`, so the OpenAPI schema — and
the schemathesis run against it — hold them to the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from fastapi import Response


class JsonBytes(Response):
    media_type = "application/json"


def json_response(content: Any, status_code: int = 200) -> JsonBytes:
    return JsonBytes(orjson.dumps(content), status_code=status_code)


#: An encoded JSON value, whole or in consecutive pieces.
JsonPieces = bytes | Sequence[bytes | memoryview]


def json_array(items: Iterable[JsonPieces]) -> bytes:
    """A JSON array of encoded JSON values, joined in one copy (these bodies run to
    megabytes, and every copy of one is held by each request in flight)."""
    parts: list[bytes | memoryview] = [b"["]
    for index, item in enumerate(items):
        if index:
            parts.append(b",")
        parts.extend((item,) if isinstance(item, bytes) else item)
    parts.append(b"]")
    return b"".join(parts)


def with_fields(json_object: bytes, fields: Mapping[str, Any]) -> JsonPieces:
    """`{...json_object, ...fields}` for an encoded, non-empty JSON object, without decoding
    or copying it."""
    return (memoryview(json_object)[:-1], b",", orjson.dumps(fields)[1:])
