"""ELSA 3 client: HTTP reads, wire models, and mapping to the domain models.

The ELSA wire format stays inside this package; the sync worker reads with `ElsaClient`
and hands what it got to `definition_write` / `instance_write`.
"""

from tamma_sync.elsa.client import CreationPage, ElsaClient
from tamma_sync.elsa.errors import (
    ElsaAuthError,
    ElsaError,
    ElsaNotFound,
    ElsaProtocolError,
    ElsaUnavailable,
)
from tamma_sync.elsa.listings import (
    ChangePage,
    Column,
    Listing,
    filter_timestamp,
    require_ascending,
)
from tamma_sync.elsa.mapping import (
    definition_write,
    epoch_ms,
    instance_write,
    journal_entry,
    sub_status,
)
from tamma_sync.elsa.timestamps import TICKS_PER_SECOND, ElsaTimestamp
from tamma_sync.elsa.transport import RetryPolicy, Timeouts
from tamma_sync.elsa.wire import InstanceDetail, InstanceSummary, VariableValue

__all__ = [
    "TICKS_PER_SECOND",
    "ChangePage",
    "Column",
    "CreationPage",
    "ElsaAuthError",
    "ElsaClient",
    "ElsaError",
    "ElsaNotFound",
    "ElsaProtocolError",
    "ElsaTimestamp",
    "ElsaUnavailable",
    "InstanceDetail",
    "InstanceSummary",
    "Listing",
    "RetryPolicy",
    "Timeouts",
    "VariableValue",
    "definition_write",
    "epoch_ms",
    "filter_timestamp",
    "instance_write",
    "journal_entry",
    "require_ascending",
    "sub_status",
]
