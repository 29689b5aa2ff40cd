"""Where a sync writes: the store in this process, or a remote tamma-sync over HTTP.

Both take the same `SyncBatch` — rows, deletions and the source's new state, applied
atomically and idempotently — so the sync algorithm does not care which one it has. Both
tell a batch whose content was refused (`BatchRefused`) from one that could not be
written now (any other error), so the sync can set one bad row aside and go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, Protocol

import httpx
import stamina
from pydantic import SecretStr, TypeAdapter

from tamma_sync.models import (
    MAX_BATCH_INSTANCES,
    Definition,
    InstancePosition,
    InstanceWrite,
    SourceState,
    SyncBatch,
)
from tamma_sync.store import Leadership, NewRows, Store, WriteResult, refusal_reason

#: Instances per read of the mirror's positions.
POSITIONS_PAGE: Final = 5_000
#: What a remote tamma-sync answers a batch whose content it refuses.
_REFUSED_STATUSES: Final = frozenset({400, 413, 422})


class BatchRefused(Exception):
    """The mirror refused a batch's content (a row it cannot keep); writing it again will
    fail the same way. `reason` says why, without the rows' values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sink(Protocol):
    """What the sync needs from the mirror it keeps."""

    joined_instances: int
    """Most instances of a batch that joins pages of a walk (`sync/walk.py`); 0: each page
    is a batch of its own."""

    async def load_state(self, source_id: str) -> SourceState | None:
        """The source's last saved state (cursor, counters), or None on a first run."""
        ...

    async def definitions(self, source_id: str) -> list[Definition]:
        """The mirror's live definitions that came from this source."""
        ...

    async def instance_positions(
        self,
        source_id: str,
        *,
        created_from: int | None = None,
        created_before: int | None = None,
        active: bool = False,
        after_id: str | None = None,
        limit: int = POSITIONS_PAGE,
    ) -> list[InstancePosition]:
        """The source's live instances in id order after `after_id`: those created in
        [created_from, created_before) (epoch ms), or only those not ended (`active`)."""
        ...

    def new_rows(self, source_id: str, writes: Sequence[InstanceWrite]) -> NewRows | None:
        """A batch's instance writes made into the rows they lead to in a mirror that
        holds none of them yet (`Store.new_rows`), to pass to `apply`: work done ahead of
        the write, while an earlier one is under way. None where there is nothing to gain."""
        ...

    async def apply(
        self,
        batch: SyncBatch,
        made: NewRows | None = None,
        sent: asyncio.Event | None = None,
    ) -> WriteResult:
        """Apply a batch atomically; applying the same batch twice changes nothing more.
        BatchRefused when its content is refused (nothing of it is written then). `made`:
        what `new_rows` made of this batch. `sent`: set once the batch is on its way to
        where it is stored (the work before, on the event loop, done)."""
        ...

    async def lead(self, source_id: str) -> Leadership | None:
        """Leadership of this source's sync, so that one process syncs it; None if taken."""
        ...

    def keep_ended_ms(self, own: int | None) -> int | None:
        """How long after it finished the mirror keeps an ended instance, in ms (None: for
        ever): what its retention purges, the sync does not mirror again. `own`: this
        sync's setting (`SyncOptions.keep_ended_ms`)."""
        ...


class StoreSink:
    """Writes straight into a Store (the server's embedded sync, `tamma-sync sync`)."""

    joined_instances = MAX_BATCH_INSTANCES

    def __init__(self, store: Store, tenant_id: str) -> None:
        self._store = store
        self._tenant_id = tenant_id

    async def load_state(self, source_id: str) -> SourceState | None:
        return await self._store.source_state(self._tenant_id, source_id)

    async def definitions(self, source_id: str) -> list[Definition]:
        listed = await self._store.list_definitions(self._tenant_id)
        return [definition for definition in listed if definition.source_id == source_id]

    async def instance_positions(
        self,
        source_id: str,
        *,
        created_from: int | None = None,
        created_before: int | None = None,
        active: bool = False,
        after_id: str | None = None,
        limit: int = POSITIONS_PAGE,
    ) -> list[InstancePosition]:
        return await self._store.source_instance_positions(
            self._tenant_id,
            source_id,
            created_from=created_from,
            created_before=created_before,
            active=active,
            after_id=after_id,
            limit=limit,
        )

    def new_rows(self, source_id: str, writes: Sequence[InstanceWrite]) -> NewRows | None:
        return self._store.new_rows(self._tenant_id, source_id, writes)

    async def apply(
        self,
        batch: SyncBatch,
        made: NewRows | None = None,
        sent: asyncio.Event | None = None,
    ) -> WriteResult:
        try:
            return await self._store.apply_sync_batch(self._tenant_id, batch, made, sent)
        except Exception as exc:
            reason = refusal_reason(exc)
            if reason is None:
                raise
            raise BatchRefused(reason) from exc

    async def lead(self, source_id: str) -> Leadership | None:
        return await self._store.lead(f"sync:{self._tenant_id}:{source_id}")

    def keep_ended_ms(self, own: int | None) -> int | None:
        return own  # the store is purged by the settings this sync runs with


class _AlwaysLeading:
    """Push mode has no shared lock: run one pushing worker per source."""

    async def still_held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


_DEFINITIONS = TypeAdapter(list[Definition])
_POSITIONS = TypeAdapter(list[InstancePosition])


def _error_of(response: httpx.Response) -> str:
    """The `error` a tamma-sync answer carries, cut short."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    return str(error)[:200] if error else response.reason_phrase


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, httpx.TransportError)


class HttpSink:
    """Pushes to a remote tamma-sync: `POST /api/sync/batch`, authenticated with a key that
    has the `sync:write` scope. Batches are idempotent, so failed pushes are retried. Each
    page is pushed on its own: pages joined could outgrow the request size the server
    takes (`TAMMA_SYNC_MAX_BODY_BYTES`), and be refused whole. The server's retention of
    ended instances is learned with the source's state (`/api/sync/status`)."""

    joined_instances = 0

    def __init__(
        self, base_url: str, api_key: SecretStr | None = None, *, timeout: float = 60.0
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        # A `user:password@` in the URL is sent as Basic auth, as httpx would, but kept out
        # of the URL: httpx names the URL in its errors, which end up in logs and status.
        url = httpx.URL(base_url)
        auth = httpx.BasicAuth(url.username, url.password) if url.userinfo else None
        self._http = httpx.AsyncClient(
            base_url=str(url.copy_with(username=None, password=None)).rstrip("/"),
            auth=auth,
            headers=headers,
            timeout=timeout,
        )
        self._server_keeps_ended_ms: int | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    @stamina.retry(on=_retryable, attempts=5, timeout=120)
    async def _get(self, path: str, params: dict[str, str | int] | None = None) -> httpx.Response:
        response = await self._http.get(path, params=params)
        response.raise_for_status()
        return response

    async def load_state(self, source_id: str) -> SourceState | None:
        response = await self._get("/api/sync/status")
        status = response.json()
        self._server_keeps_ended_ms = status.get("keepEndedInstancesMs")
        for entry in status["sources"]:
            if entry["sourceId"] == source_id:
                return SourceState.model_validate(entry)
        return None

    async def definitions(self, source_id: str) -> list[Definition]:
        listed = _DEFINITIONS.validate_python(
            (await self._get("/api/workflows/definitions")).json()
        )
        return [definition for definition in listed if definition.source_id == source_id]

    async def instance_positions(
        self,
        source_id: str,
        *,
        created_from: int | None = None,
        created_before: int | None = None,
        active: bool = False,
        after_id: str | None = None,
        limit: int = POSITIONS_PAGE,
    ) -> list[InstancePosition]:
        params: dict[str, str | int] = {"limit": limit}
        if created_from is not None:
            params["createdFrom"] = created_from
        if created_before is not None:
            params["createdBefore"] = created_before
        if active:
            params["active"] = "true"
        if after_id is not None:
            params["after"] = after_id
        response = await self._get(f"/api/sync/sources/{source_id}/instances", params)
        return _POSITIONS.validate_python(response.json()["items"])

    def new_rows(self, source_id: str, writes: Sequence[InstanceWrite]) -> NewRows | None:
        return None  # the remote mirror makes its rows itself

    @stamina.retry(on=_retryable, attempts=5, timeout=120)
    async def apply(
        self,
        batch: SyncBatch,
        made: NewRows | None = None,
        sent: asyncio.Event | None = None,
    ) -> WriteResult:
        content = batch.model_dump_json(by_alias=True, exclude_none=True)
        if sent is not None:
            sent.set()
        response = await self._http.post(
            "/api/sync/batch",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        if response.status_code in _REFUSED_STATUSES:
            raise BatchRefused(f"HTTP {response.status_code}: {_error_of(response)}")
        response.raise_for_status()
        body = response.json()
        return WriteResult(
            created=body["created"],
            updated=body["updated"],
            unchanged=body["unchanged"],
            deleted=body["deleted"],
        )

    async def lead(self, source_id: str) -> Leadership | None:
        return _AlwaysLeading()

    def keep_ended_ms(self, own: int | None) -> int | None:
        """The server's setting once learned; this sync's own while it is not, or if the
        server purges no ended instances (or predates saying so)."""
        return self._server_keeps_ended_ms if self._server_keeps_ended_ms is not None else own
