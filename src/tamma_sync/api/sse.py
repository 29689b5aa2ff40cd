"""Server-Sent Events on the wire: frames, and the response that carries them.

The headers are the original Tamma stream's, byte for byte: `Content-Type:
text/event-stream`, `Cache-Control: no-cache`, `Connection: keep-alive`,
`X-Accel-Buffering: no` (the last keeps nginx from buffering the stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import StreamingResponse

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}
HEARTBEAT = ":heartbeat\n\n"
#: Milliseconds a client waits before reconnecting after the server ended a stream.
RETRY_MS = 1_000


def frame(event: str, data: Any, seq: int | None = None) -> str:
    """One event: `event:`, optional `id:`, and the data as one line of JSON."""
    lines = [f"event: {event}"]
    if seq is not None:
        lines.append(f"id: {seq}")
    lines.append(f"data: {_encode(data).decode()}")
    return "\n".join(lines) + "\n\n"


def _encode(data: Any) -> bytes:
    """The data as JSON; for data nested deeper than the encoder goes (the store keeps up
    to its limit, and a frame wraps it in more levels), an error in its place, so the
    frame still carries its id and a client moves past it instead of failing on it."""
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        return orjson.dumps({"error": "This change cannot be shown: its data is nested too deeply"})


def retry_hint(milliseconds: int = RETRY_MS) -> str:
    return f"retry: {milliseconds}\n\n"


class EventStream(StreamingResponse):
    def __init__(self, frames: AsyncIterator[str]) -> None:
        super().__init__(frames, headers=SSE_HEADERS)


#: OpenAPI description of a stream response.
EVENT_STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A stream of Server-Sent Events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
