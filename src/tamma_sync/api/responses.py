"""JSON bodies written straight from wire dicts and kept JSON, for the big lists.

A page of instances or the list of definitions holds thousands of values; building a model
per row only for FastAPI to validate and serialize it again costs more than the query. The
routes that answer with these still declare `response_model`, so the OpenAPI schema — and
the schemathesis run against it — hold them to the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from fastapi import Response


class JsonBytes(Response):
    media_type = "application/json"


def json_response(content: Any) -> JsonBytes:
    return JsonBytes(orjson.dumps(content))


def json_array(items: Iterable[bytes]) -> JsonBytes:
    """A JSON array of already encoded JSON values."""
    return JsonBytes(b"[" + b",".join(items) + b"]")


def with_fields(json_object: bytes, fields: Mapping[str, Any]) -> bytes:
    """`{...json_object, ...fields}` for an encoded, non-empty JSON object, without decoding it."""
    return json_object[:-1] + b"," + orjson.dumps(fields)[1:]
