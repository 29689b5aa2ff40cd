"""Offset pages at any depth: where every 250th row of a listing is, remembered.

An offset page N rows deep walks N index entries before its first row, and the original
API's `page`/`pageSize` paging has no other way to go deep. An anchor is the (order value,
id) of the row at a multiple of `ANCHOR_STEP` in one listing — one tenant, its filter
values, its order — found once by that walk; a page at any depth then walks fewer than
`ANCHOR_STEP` entries from the nearest anchor before it. The first row of a page so read
is remembered as an anchor too: the same page asked for again (a dashboard's refresh)
walks none, as the first page does.

An anchor holds for the revision of the data it was read at (`pages.anchor_statement`),
and the page's statement checks that revision in its own snapshot: once a write has moved
rows, it returns nothing, the anchor is forgotten and the page is read the long way. So a
page is never off by the rows a write moved, whichever process wrote them. The listing's
total at that revision is remembered with the page's own anchor once a page counted it:
the same page asked for again is not counted again (for a filter the kept counts are not
kept by, a count of every matching row).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

from tamma_sync.store.database import Database
from tamma_sync.store.pages import (
    PageShape,
    anchor_statement,
    anchored_page_statement,
    page_row_position,
)

#: Rows between anchors: at most this many index entries walked before a page's first row.
ANCHOR_STEP = 250
#: Anchors kept per process, least recently used dropped first (about 100 bytes each).
CAPACITY = 50_000
#: Page parameters an anchor does not depend on.
_PAGE_ONLY = frozenset({"row_limit", "row_offset", "branch_limit"})


class Anchor(NamedTuple):
    changes_seq: int
    catalog_revision: int
    value: int
    """The row's order value (createdAt or updatedAt)."""
    id: str
    total: int | None = None
    """The listing's total at this revision, once a page read from here counted it."""


class OffsetAnchors:
    """The anchors of the listings this process served, by listing and position."""

    def __init__(self, step: int = ANCHOR_STEP, capacity: int = CAPACITY) -> None:
        self.step = step
        self._capacity = capacity
        self._anchors: OrderedDict[Hashable, Anchor] = OrderedDict()

    async def page_rows(
        self, db: Database, shape: PageShape, parameters: Mapping[str, Any]
    ) -> tuple[Sequence[Sequence[Any]], int | None] | None:
        """An offset page's rows walked from its anchor (its own first row's, or the
        nearest step's before it), and the listing's total when the shape asks for it;
        None when it has none — a page less than a step deep, one past the end, or one
        whose rows a write moved since its anchor was read (that anchor is then
        forgotten)."""
        offset: int = parameters["row_offset"]
        at = offset // self.step * self.step
        if not shape.skipping or at == 0 or shape.sub_status_branches:
            return None
        # `page_parameters` gives a shape's parameters in one order: their values name it.
        listing = tuple(value for name, value in parameters.items() if name not in _PAGE_ONLY)
        own_key = (shape, listing, offset)
        start = offset if own_key in self._anchors else at
        key = (shape, listing, start)
        anchor = self._anchors.get(key)
        if anchor is None:
            found = await db.read_rows(
                anchor_statement(shape), {**parameters, "anchor_offset": at}, skipping=at
            )
            if not found:
                return None
            anchor = self._remember(key, Anchor(*found[0]))
        else:
            self._anchors.move_to_end(key)
        counted = anchor.total is not None
        rows = await db.read_rows(
            anchored_page_statement(shape, shape.with_total and not counted),
            {
                **parameters,
                "row_offset": offset - start,
                "anchor_value": anchor.value,
                "anchor_id": anchor.id,
                "changes_seq": anchor.changes_seq,
                "catalog_revision": anchor.catalog_revision,
            },
            skipping=offset - start,
        )
        if not rows:
            self._anchors.pop(key, None)
            return None
        total = anchor.total if counted else rows[0][-1] if shape.with_total else None
        if start != offset or total != anchor.total:
            # The page's first row and the total, as of the anchor's revision.
            revision = anchor.changes_seq, anchor.catalog_revision
            position = page_row_position(shape, rows[0])
            self._remember(own_key, Anchor(*revision, *position, total))
        return rows, total

    def _remember(self, key: Hashable, anchor: Anchor) -> Anchor:
        self._anchors[key] = anchor
        if len(self._anchors) > self._capacity:
            self._anchors.popitem(last=False)
        return anchor
