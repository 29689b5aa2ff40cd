"""Where a sync writes: the store in this process, or a remote tamma-sync over HTTP.

Both take the same `SyncBatch` — rows, deletions and the source's new state, applied
atomically and idempotently — so the sync algorithm does not care which one it has.
"""

from __future__ import annotations

from typing import Protocol

import httpx
import stamina
from pydantic import SecretStr, TypeAdapter

from tamma_sync.models import Definition, SourceState, SyncBatch
from tamma_sync.store import Leadership, Store, WriteResult

#: Ids per reconciliation read of the mirror.
POSITIONS_PAGE = 5_000


class Sink(Protocol):
    """What the sync needs from the mirror it keeps."""

    async def load_state(self, source_id: str) -> SourceState | None:
        """The source's last saved state (cursor, counters), or None on a first run."""
        ...

    async def definitions(self, source_id: str) -> list[Definition]:
        """The mirror's live definitions that came from this source."""
        ...

    async def instance_positions(
        self, source_id: str, after_id: str | None, limit: int
    ) -> list[tuple[str, int]]:
        """(id, updatedAt) of the source's live instances, in id order after `after_id`."""
        ...

    async def apply(self, batch: SyncBatch) -> WriteResult:
        """Apply a batch atomically; applying the same batch twice changes nothing more."""
        ...

    async def lead(self, source_id: str) -> Leadership | None:
        """Leadership of this source's sync, so that one process syncs it; None if taken."""
        ...


class StoreSink:
    """Writes straight into a Store (the server's embedded sync, `tamma-sync sync`)."""

    def __init__(self, store: Store, tenant_id: str) -> None:
        self._store = store
        self._tenant_id = tenant_id

    async def load_state(self, source_id: str) -> SourceState | None:
        return await self._store.source_state(self._tenant_id, source_id)

    async def definitions(self, source_id: str) -> list[Definition]:
        listed = await self._store.list_definitions(self._tenant_id)
        return [definition for definition in listed if definition.source_id == source_id]

    async def instance_positions(
        self, source_id: str, after_id: str | None, limit: int
    ) -> list[tuple[str, int]]:
        return await self._store.source_instance_positions(
            self._tenant_id, source_id, after_id, limit
        )

    async def apply(self, batch: SyncBatch) -> WriteResult:
        return await self._store.apply_sync_batch(self._tenant_id, batch)

    async def lead(self, source_id: str) -> Leadership | None:
        return await self._store.lead(f"sync:{self._tenant_id}:{source_id}")


class _AlwaysLeading:
    """Push mode has no shared lock: run one pushing worker per source."""

    async def still_held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


_RETRYABLE = (httpx.TransportError, httpx.HTTPStatusError)
_DEFINITIONS = TypeAdapter(list[Definition])


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, httpx.TransportError)


class HttpSink:
    """Pushes to a remote tamma-sync: `POST /api/sync/batch`, authenticated with a key that
    has the `sync:write` scope. Batches are idempotent, so failed pushes are retried."""

    def __init__(
        self, base_url: str, api_key: SecretStr | None = None, *, timeout: float = 60.0
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    @stamina.retry(on=_retryable, attempts=5, timeout=120)
    async def _get(self, path: str, params: dict[str, str | int] | None = None) -> httpx.Response:
        response = await self._http.get(path, params=params)
        response.raise_for_status()
        return response

    async def load_state(self, source_id: str) -> SourceState | None:
        response = await self._get("/api/sync/status")
        for entry in response.json()["sources"]:
            if entry["sourceId"] == source_id:
                return SourceState.model_validate(entry)
        return None

    async def definitions(self, source_id: str) -> list[Definition]:
        listed = _DEFINITIONS.validate_python(
            (await self._get("/api/workflows/definitions")).json()
        )
        return [definition for definition in listed if definition.source_id == source_id]

    async def instance_positions(
        self, source_id: str, after_id: str | None, limit: int
    ) -> list[tuple[str, int]]:
        params: dict[str, str | int] = {"limit": limit}
        if after_id is not None:
            params["after"] = after_id
        response = await self._get(f"/api/sync/sources/{source_id}/instances", params)
        return [(item["id"], item["updatedAt"]) for item in response.json()["items"]]

    @stamina.retry(on=_retryable, attempts=5, timeout=120)
    async def apply(self, batch: SyncBatch) -> WriteResult:
        response = await self._http.post(
            "/api/sync/batch",
            content=batch.model_dump_json(by_alias=True, exclude_none=True),
            headers={"Content-Type": "application/json"},
        )
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
