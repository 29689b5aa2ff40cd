"""A lean Server-Sent Events client on raw asyncio streams, for the benchmarks.

It stamps every frame with the moment its bytes arrived (`time.perf_counter()`, right
after the chunk is read), does no work it does not need to, and keeps one socket per
stream, so a thousand idle streams cost the client little.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Frame:
    """One dispatched SSE block: an event, or a comment-only block such as `:heartbeat`."""

    arrived: float
    event: str | None = None
    id: str | None = None
    data: str | None = None
    comment: str | None = None


class StreamError(Exception):
    """The server answered something other than a 200 event stream."""


def _parse_block(block: str, arrived: float) -> Frame | None:
    event = event_id = data = comment = None
    for line in block.split("\n"):
        if not line:
            continue
        if line.startswith(":"):
            comment = line[1:]
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "id":
            event_id = value
        elif name == "data":
            data = value if data is None else f"{data}\n{value}"
    if event is None and data is None and comment is None and event_id is None:
        return None
    return Frame(arrived, event, event_id, data, comment if event is None else None)


class SseStream:
    """One open stream: `async for frame in stream.frames()` until the server closes it."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunked: bool
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._chunked = chunked

    @classmethod
    async def open(
        cls, base_url: str, path: str, headers: dict[str, str] | None = None
    ) -> SseStream:
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port)
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1").strip()
        response_headers: dict[str, str] = {}
        while (line := (await reader.readline()).decode("latin-1").strip()) != "":
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()
        status = status_line.split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            writer.close()
            raise StreamError(f"{path}: {status_line}")
        chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
        return cls(reader, writer, chunked)

    async def _chunks(self) -> AsyncIterator[tuple[bytes, float]]:
        if not self._chunked:
            while data := await self._reader.read(65536):
                yield data, time.perf_counter()
            return
        while True:
            size_line = await self._reader.readline()
            if not size_line:
                return
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                return
            data = await self._reader.readexactly(size + 2)
            yield data[:-2], time.perf_counter()

    async def frames(self) -> AsyncIterator[Frame]:
        pending = ""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            async for data, arrived in self._chunks():
                pending += data.decode()
                while "\n\n" in pending:
                    block, pending = pending.split("\n\n", 1)
                    frame = _parse_block(block, arrived)
                    if frame is not None:
                        yield frame

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
