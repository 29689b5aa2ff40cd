"""Keyset cursors: an opaque token for "the rows after this one, in this order"."""

from __future__ import annotations

import base64
import binascii

import orjson

from tamma_sync.api.errors import ApiError
from tamma_sync.models import MAX_EPOCH_MS
from tamma_sync.store.pages import OrderBy


def encode_cursor(order_by: OrderBy, descending: bool, position: tuple[int, str]) -> str:
    payload = orjson.dumps([order_by, descending, position[0], position[1]])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str, order_by: OrderBy, descending: bool) -> tuple[int, str]:
    """The keyset position in a cursor; 400 if it is not one of ours or was made for
    another order."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        made_for, made_descending, value, last_id = orjson.loads(
            base64.urlsafe_b64decode(padded.encode())
        )
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise ApiError(400, "cursor: not a cursor this server returned") from exc
    if not (isinstance(value, int) and 0 <= value <= MAX_EPOCH_MS and isinstance(last_id, str)):
        raise ApiError(400, "cursor: not a cursor this server returned")
    if (made_for, made_descending) != (order_by, descending):
        raise ApiError(
            400, "cursor: it was returned for another orderBy/orderDirection; pass the same ones"
        )
    return value, last_id
