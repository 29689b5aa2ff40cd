"""Reading instances' details (workflow state and variables) from ELSA, a few at a time.

One instance's details failing must not fail the source: ELSA answers 500 for good for an
instance whose state it cannot load, while every other instance reads fine. So a failure
with an answer from ELSA (a 500, a body this client cannot read) is that instance's,
reported back for the caller to set aside; a failure to reach ELSA at all, or its saying
it is overloaded (502 to 504, 429) or that the credentials are wrong, is the cycle's: it
cancels the reads still under way, and the cycle ends once they have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from tamma_sync.elsa import (
    ElsaClient,
    ElsaError,
    ElsaNotFound,
    ElsaProtocolError,
    ElsaUnavailable,
    InstanceDetail,
    VariableValue,
)
from tamma_sync.sync.together import run_together

#: Statuses that say ELSA failed on this one instance (not that it is down or overloaded).
INSTANCE_FAULTS: Final = frozenset({500})


@dataclass
class Details:
    """What ELSA answered for a set of instances."""

    found: dict[str, tuple[InstanceDetail, list[VariableValue]]] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def is_instance_fault(exc: ElsaError) -> bool:
    """Whether a failed read is this instance's (the rest of the cycle goes on)."""
    if isinstance(exc, ElsaUnavailable):
        return exc.status in INSTANCE_FAULTS
    return isinstance(exc, ElsaProtocolError) and exc.status is not None


class DetailReader:
    """Reads details with at most `concurrency` requests in flight."""

    def __init__(self, client: ElsaClient, concurrency: int) -> None:
        self._client = client
        self._slots = asyncio.Semaphore(concurrency)

    async def read(
        self,
        ids: Iterable[str],
        known: Mapping[str, InstanceDetail] | None = None,
        *,
        once: bool = False,
    ) -> Details:
        """Details of these instances; those in `known` (just read) only need variables.
        `once`: one attempt each, for instances whose details failed before (a retry
        policy's waits would hold the whole cycle up for an instance ELSA cannot load)."""
        details = Details()
        known = known or {}

        async def one(instance_id: str) -> None:
            async with self._slots:
                try:
                    detail = known.get(instance_id) or await self._client.get_instance(
                        instance_id, once=once
                    )
                    variables = await self._client.get_instance_variables(
                        instance_id, detail=detail
                    )
                except ElsaNotFound:
                    details.gone.append(instance_id)
                    return
                except ElsaError as exc:
                    if not is_instance_fault(exc):
                        raise
                    details.failed[instance_id] = f"details: {exc}"
                    return
            details.found[instance_id] = (detail, variables)

        await run_together(one(instance_id) for instance_id in dict.fromkeys(ids))
        return details
