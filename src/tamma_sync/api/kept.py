"""Response bodies kept while the catalog — definitions and their counts — is unchanged.

A dashboard's list of definitions with their counts is the same for every viewer until a
write changes a definition or a count, and building it means summing thousands of kept
counts and writing out every definition. So it is built once per catalog revision
(`Store.catalog_revision`) and served from memory until the revision moves on.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable


class KeptBodies:
    """Bodies by key, each with the catalog revision it was built at; the least recently
    used goes first once more than `capacity` are kept."""

    def __init__(self, capacity: int = 8) -> None:
        self._capacity = capacity
        self._bodies: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._building = asyncio.Lock()

    async def get(
        self, key: Hashable, revision: int, build: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """The body kept for `key` at `revision`, else `build()`'s. Read `revision` before
        building: the body then shows that revision or a later one, never an earlier."""
        body = self._current(key, revision)
        if body is not None:
            return body
        async with self._building:  # requests arriving together build it once
            body = self._current(key, revision)
            if body is None:
                body = await build()
                kept = self._bodies.get(key)
                if kept is None or kept[0] <= revision:
                    self._bodies[key] = (revision, body)
                    self._bodies.move_to_end(key)
                    while len(self._bodies) > self._capacity:
                        self._bodies.popitem(last=False)
        return body

    def _current(self, key: Hashable, revision: int) -> bytes | None:
        kept = self._bodies.get(key)
        if kept is None or kept[0] != revision:
            return None
        self._bodies.move_to_end(key)
        return kept[1]
