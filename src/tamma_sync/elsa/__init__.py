"""ELSA 3 client: HTTP reads, wire models, and mapping to the domain models.

The ELSA wire format stays inside this package; the sync worker reads with `ElsaClient`
and hands what it got to `definition_write` / `instance_write`.
"""

from tamma_sync.elsa.client import (
    ChangePage,
    ElsaClient,
    Listing,
    RetryPolicy,
    Timeouts,
    filter_timestamp,
)
from tamma_sync.elsa.errors import (
    ElsaAuthError,
    ElsaError,
    ElsaNotFound,
    ElsaProtocolError,
    ElsaUnavailable,
)
from tamma_sync.elsa.mapping import definition_write, instance_write, sub_status
from tamma_sync.elsa.timestamps import ElsaTimestamp
from tamma_sync.elsa.wire import InstanceSummary

__all__ = [
    "ChangePage",
    "ElsaAuthError",
    "ElsaClient",
    "ElsaError",
    "ElsaNotFound",
    "ElsaProtocolError",
    "ElsaTimestamp",
    "ElsaUnavailable",
    "InstanceSummary",
    "Listing",
    "RetryPolicy",
    "Timeouts",
    "definition_write",
    "filter_timestamp",
    "instance_write",
    "sub_status",
]
