"""Writing a sync's batches so that one bad row never stops a source.

A row our models refuse is set aside when it is mapped (`Rejections.keep`). A batch the
mirror refuses is split in halves until the rows it refuses stand alone; those are set
aside as rejections (listed in the source's state with a short reason, retried later
with backoff) and everything else is written. A rejection leaves the list once its row
is written or found gone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

from pydantic import ValidationError

from tamma_sync.elsa import InstanceSummary, instance_write
from tamma_sync.fields import MAX_ID_LENGTH
from tamma_sync.models import (
    MAX_LISTED_REJECTIONS,
    MAX_REJECTION_REASON,
    DefinitionWrite,
    EntityKind,
    InstanceWrite,
    Rejection,
    SourceState,
    SyncBatch,
    now_ms,
)
from tamma_sync.store import NewRows, WriteResult
from tamma_sync.sync.details import Details
from tamma_sync.sync.sink import BatchRefused, Sink

log = logging.getLogger(__name__)

#: Longest wait before a rejected row is tried again, in seconds.
MAX_RETRY_DELAY: Final = 3600.0
_W = TypeVar("_W", InstanceWrite, DefinitionWrite)


class Rejections:
    """Rows a source could not mirror, by id: their reasons and when to try them again."""

    def __init__(
        self, source_id: str, retry_base: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source_id = source_id
        self._retry_base = retry_base
        self._clock = clock
        self._listed: dict[str, Rejection] = {}
        self._retry_at: dict[str, float] = {}
        self._uncounted = 0

    def load(self, state: SourceState) -> None:
        """Take over a stored state's list; each is tried again at the next cycle."""
        self._listed = {rejection.id: rejection for rejection in state.rejections}
        self._retry_at = dict.fromkeys(self._listed, 0.0)

    def record(self, state: SourceState) -> SourceState:
        """Put the list into `state`, and count the rows rejected since the last time."""
        state.rejections = list(self._listed.values())
        state.counters.rejected += self._uncounted
        self._uncounted = 0
        return state

    def add(self, entity_id: str, reason: str, entity: EntityKind = EntityKind.INSTANCE) -> None:
        """Note a refused row; a row not listed yet counts in the `rejected` counter."""
        key = entity_id[:MAX_ID_LENGTH]
        known = self._listed.pop(key, None)
        attempts = known.attempts + 1 if known is not None else 1
        if known is None:
            self._uncounted += 1
            log.warning("sync of %s: %s %s rejected: %s", self._source_id, entity, key, reason)
        self._listed[key] = Rejection(
            id=key,
            entity=entity,
            reason=reason[:MAX_REJECTION_REASON],
            at=now_ms(),
            attempts=attempts,
        )
        delay = min(MAX_RETRY_DELAY, self._retry_base * 2.0 ** (attempts - 1))
        self._retry_at[key] = self._clock() + delay
        while len(self._listed) > MAX_LISTED_REJECTIONS:
            oldest = next(iter(self._listed))
            del self._listed[oldest]
            self._retry_at.pop(oldest, None)

    def keep(self, kept: list[_W], what: str, build: Callable[[], _W], entity: EntityKind) -> None:
        """Map one ELSA row into `kept`; a row our models refuse (an id of 300 characters,
        say) is set aside instead, and does not hold back the rest of the sync."""
        try:
            kept.append(build())
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            self.add(what, f"refused: {where}: {first['msg']}", entity)

    def clear(self, entity_ids: Iterable[str]) -> None:
        """These rows were written or are gone: they leave the list."""
        for entity_id in entity_ids:
            key = entity_id[:MAX_ID_LENGTH]
            if self._listed.pop(key, None) is not None:
                self._retry_at.pop(key, None)

    def is_rejected(self, entity_id: str) -> bool:
        return entity_id[:MAX_ID_LENGTH] in self._listed

    def due(self, entity: EntityKind) -> list[str]:
        """Rejected rows of this kind whose next attempt has come."""
        now = self._clock()
        return [
            key
            for key, rejection in self._listed.items()
            if rejection.entity is entity and self._retry_at.get(key, 0.0) <= now
        ]


@dataclass(frozen=True)
class Staged:
    """A batch of instance writes ready to apply, and the details it was made from."""

    batch: SyncBatch
    details: Details

    def joined(self, more: Staged) -> Staged:
        """This batch followed by `more`, as one."""
        batch = self.batch.model_copy(
            update={
                "instances": [*self.batch.instances, *more.batch.instances],
                "deleted_instance_ids": [
                    *self.batch.deleted_instance_ids,
                    *more.batch.deleted_instance_ids,
                ],
            }
        )
        details = Details(
            found={**self.details.found, **more.details.found},
            gone=[*self.details.gone, *more.details.gone],
            failed={**self.details.failed, **more.details.failed},
        )
        return Staged(batch, details)


def stage_writes(
    source_id: str,
    details: Details,
    plain: Iterable[InstanceSummary],
    deleted: list[str],
    rejections: Rejections,
) -> Staged:
    """What ELSA answered, mapped to the mirror's writes: rows with their details, rows
    without (`plain`), deletions. A row the models refuse is rejected."""
    writes: list[InstanceWrite] = []
    for instance_id, (detail, variables) in details.found.items():
        build = functools.partial(instance_write, detail, variables=variables)
        rejections.keep(writes, instance_id, build, EntityKind.INSTANCE)
    for row in plain:
        rejections.keep(writes, row.id, functools.partial(instance_write, row), EntityKind.INSTANCE)
    batch = SyncBatch(source_id=source_id, instances=writes, deleted_instance_ids=deleted)
    return Staged(batch, details)


class Writer:
    """Applies batches to a sink, setting refused rows aside instead of failing."""

    def __init__(self, sink: Sink, rejections: Rejections) -> None:
        self._sink = sink
        self._rejections = rejections

    async def apply(
        self,
        batch: SyncBatch,
        made: NewRows | None = None,
        sent: asyncio.Event | None = None,
    ) -> WriteResult:
        """Write the batch; rows the sink refuses are rejected and the rest is written. The
        batch's source state (with the rejections) goes last, after every row it covers.
        `made`: the batch's rows as the sink made them ahead (`Sink.new_rows`); `sent`:
        see `Sink.apply`."""
        refused: set[str] = set()
        try:
            result = await self._sink.apply(self._recorded(batch), made, sent)
        except BatchRefused:
            if not batch.instances and not batch.definitions:
                raise  # nothing a row could have caused
            rows = batch.model_copy(update={"deleted_instance_ids": [], "state": None})
            rest = batch.model_copy(update={"instances": [], "definitions": []})
            result = await self._rows(rows, refused)
            result.add(await self._sink.apply(self._recorded(rest)))
        self._written(batch, refused)
        return result

    async def _rows(self, batch: SyncBatch, refused: set[str]) -> WriteResult:
        try:
            return await self._sink.apply(batch)
        except BatchRefused as refusal:
            instances, definitions = batch.instances, batch.definitions
            if len(instances) + len(definitions) > 1:
                result = WriteResult()
                for half in _halves(batch):
                    result.add(await self._rows(half, refused))
                return result
            if instances:
                refused.add(instances[0].id)
                self._rejections.add(instances[0].id, refusal.reason)
            else:
                refused.add(definitions[0].id)
                self._rejections.add(definitions[0].id, refusal.reason, EntityKind.DEFINITION)
            return WriteResult()

    def _recorded(self, batch: SyncBatch) -> SyncBatch:
        if batch.state is not None:
            self._rejections.record(batch.state)
        return batch

    def _written(self, batch: SyncBatch, refused: set[str]) -> None:
        """The batch's rows that were written, and its deletions, leave the list."""
        written = [w.id for w in batch.instances] + [w.id for w in batch.definitions]
        self._rejections.clear(row_id for row_id in written if row_id not in refused)
        self._rejections.clear(batch.deleted_instance_ids)


def _halves(batch: SyncBatch) -> list[SyncBatch]:
    instances, definitions = batch.instances, batch.definitions
    if len(instances) + len(definitions) < 2:
        return [batch]
    if definitions and instances:
        return [
            batch.model_copy(update={"instances": []}),
            batch.model_copy(update={"definitions": []}),
        ]
    if instances:
        middle = len(instances) // 2
        return [
            batch.model_copy(update={"instances": instances[:middle]}),
            batch.model_copy(update={"instances": instances[middle:]}),
        ]
    middle = len(definitions) // 2
    return [
        batch.model_copy(update={"definitions": definitions[:middle]}),
        batch.model_copy(update={"definitions": definitions[middle:]}),
    ]
