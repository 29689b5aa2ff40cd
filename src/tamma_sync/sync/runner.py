"""Runs the sync of every configured source as background tasks of one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tamma_sync.elsa import ElsaClient
from tamma_sync.metrics import Metrics
from tamma_sync.settings import Settings, without_credentials
from tamma_sync.store import Store
from tamma_sync.sync.options import SyncOptions
from tamma_sync.sync.service import SyncService
from tamma_sync.sync.sink import StoreSink

log = logging.getLogger(__name__)

#: How long stopping waits for a source to finish the page it is writing.
STOP_TIMEOUT_SECONDS = 30.0


class SyncRunner:
    """One `SyncService` task per source; `trigger` starts cycles, `stop` ends them cleanly."""

    def __init__(self, services: list[SyncService], clients: list[ElsaClient]) -> None:
        self.services = {service.source.id: service for service in services}
        self._clients = clients
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def into_store(
        cls, settings: Settings, store: Store, metrics: Metrics | None = None
    ) -> SyncRunner:
        """Sync every source of `settings` straight into `store`."""

        options = SyncOptions.from_settings(settings)
        clients: list[ElsaClient] = []
        services: list[SyncService] = []
        for source in settings.elsa_sources():
            client = options.client_for(source)
            clients.append(client)
            sink = StoreSink(store, source.tenant_id)
            services.append(SyncService(source, client, sink, options, metrics))
        return cls(services, clients)

    def start(self) -> None:
        for service in self.services.values():
            url = without_credentials(service.source.url)
            log.info("syncing ELSA source %s at %s", service.source.id, url)
            self._tasks.append(asyncio.create_task(service.run(), name=f"sync:{service.source.id}"))

    def sources_of(self, tenant_id: str) -> list[str]:
        """Ids of the sources synced into `tenant_id`."""
        return [
            sid for sid, service in self.services.items() if service.source.tenant_id == tenant_id
        ]

    def source(self, tenant_id: str, source_id: str) -> SyncService | None:
        """The sync of `source_id` into `tenant_id`, if this process has it."""
        service = self.services.get(source_id)
        return service if service is not None and service.source.tenant_id == tenant_id else None

    def trigger(self, source_ids: list[str]) -> list[str]:
        """Start a cycle now for these sources; returns the ids triggered."""
        for source_id in source_ids:
            self.services[source_id].trigger()
        return source_ids

    async def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
            for task in pending:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for client in self._clients:
            await client.aclose()
