"""A small, strict Server-Sent Events client for tests (over a real httpx stream)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Frame:
    """One dispatched block: an event, or a comment-only block (`:heartbeat`)."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class EndOfStream(Exception):
    """The server closed the stream."""


class SseReader:
    """Reads frames; lines are pulled by a task of their own, so that a timed-out read
    does not cancel (and so break) the underlying response iterator."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._pump = asyncio.create_task(self._pull())

    async def _pull(self) -> None:
        try:
            async for line in self.response.aiter_lines():
                await self._lines.put(line)
        except httpx.HTTPError:
            pass
        finally:
            await self._lines.put(None)

    async def aclose(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump

    async def next_frame(self, within: float = 5.0) -> Frame:
        return await asyncio.wait_for(self._read_frame(), within)

    async def next_event(self, within: float = 5.0) -> Frame:
        """The next frame with an event or retry field, skipping comments."""
        while True:
            frame = await self.next_frame(within)
            if frame.comment is None:
                return frame

    async def events_until_closed(self, within: float = 5.0) -> list[Frame]:
        frames: list[Frame] = []
        try:
            while True:
                frames.append(await self.next_event(within))
        except EndOfStream:
            return frames

    async def _read_frame(self) -> Frame:
        fields: dict[str, str] = {}
        comments: list[str] = []
        while (line := await self._lines.get()) is not None:
            if line == "":
                if fields or comments:
                    return Frame(
                        event=fields.get("event"),
                        id=fields.get("id"),
                        data=fields.get("data"),
                        retry=int(fields["retry"]) if "retry" in fields else None,
                        comment="\n".join(comments) if comments and not fields else None,
                    )
                continue
            if line.startswith(":"):
                comments.append(line[1:])
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = (
                fields[name] + "\n" + value if name == "data" and name in fields else value
            )
        raise EndOfStream


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, path: str, *, last_event_id: str | None = None, **params: str
) -> AsyncIterator[SseReader]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream("GET", path, headers=headers, params=params) as response:
        reader = SseReader(response)
        try:
            yield reader
        finally:
            await reader.aclose()
