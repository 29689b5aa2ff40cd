"""Reading ahead: the next pages of a listing are fetched while the current one is written,
and made ready once its write has gone to the database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

T = TypeVar("T")


async def prefetched(pages: AsyncGenerator[T], depth: int) -> AsyncGenerator[T]:
    """Yield `pages` in order while up to `depth` more are fetched behind them; an error
    while fetching is raised where the page it stopped would have been."""
    queue: asyncio.Queue[tuple[T] | Exception | None] = asyncio.Queue(depth)

    async def produce() -> None:
        try:
            async with contextlib.aclosing(pages) as stream:
                async for page in stream:
                    await queue.put((page,))
        except Exception as exc:  # handed to the consumer, who raises it
            await queue.put(exc)
        else:
            await queue.put(None)

    producer = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item[0]
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


async def handed_over(write: asyncio.Task[Any], sent: asyncio.Event) -> None:
    """Wait until `write` has set `sent` (its rows are on their way to the database) or
    ended. Making the next page ready waits for it, so that the write's own work on the
    event loop goes first: started at once, the next page's mapping held up each step of
    the write's transaction, and an initial walk on PostgreSQL ran a sixth slower."""
    sending = asyncio.ensure_future(sent.wait())
    try:
        await asyncio.wait((write, sending), return_when=asyncio.FIRST_COMPLETED)
    finally:
        sending.cancel()
