"""Durable storage: the only package that speaks SQL."""

from tamma_sync.store.leadership import Leadership
from tamma_sync.store.pages import InstancePage, InstanceQuery
from tamma_sync.store.store import (
    CatalogTotals,
    PurgeCutoffs,
    Store,
    WriteResult,
    is_database_unavailable,
)

__all__ = [
    "CatalogTotals",
    "InstancePage",
    "InstanceQuery",
    "Leadership",
    "PurgeCutoffs",
    "Store",
    "WriteResult",
    "is_database_unavailable",
]
