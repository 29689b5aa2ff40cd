"""Durable storage: the only package that speaks SQL."""

from tamma_sync.store.change_log import ObservedChange
from tamma_sync.store.errors import (
    MigrationRefused,
    describe_database_error,
    describe_unreachable_database,
    is_database_error,
    is_database_unavailable,
    refusal_reason,
)
from tamma_sync.store.instances import NewRows
from tamma_sync.store.leadership import Leadership
from tamma_sync.store.overview import CatalogTotals, Overview
from tamma_sync.store.pages import InstancePage, InstanceQuery
from tamma_sync.store.retention import PurgeCutoffs
from tamma_sync.store.store import Store
from tamma_sync.store.transaction import WriteResult

__all__ = [
    "CatalogTotals",
    "InstancePage",
    "InstanceQuery",
    "Leadership",
    "MigrationRefused",
    "NewRows",
    "ObservedChange",
    "Overview",
    "PurgeCutoffs",
    "Store",
    "WriteResult",
    "describe_database_error",
    "describe_unreachable_database",
    "is_database_error",
    "is_database_unavailable",
    "refusal_reason",
]
