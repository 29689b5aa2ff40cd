"""Running a cycle's ELSA requests side by side, with no request outliving a failed cycle."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any


async def run_together(calls: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run `calls` concurrently and return once all have ended. The first to fail cancels
    the rest, and its own error is raised once they have ended: the cycle classifies that
    one error (ELSA's, the database's), not an ExceptionGroup of them."""
    try:
        async with asyncio.TaskGroup() as group:
            for call in calls:
                group.create_task(call)
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
    else:
        return
    # Raised outside the except block, so the group does not become its context.
    raise first
