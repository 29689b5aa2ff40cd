"""Durable storage: the only package that speaks SQL."""

from tamma_sync.store.leadership import Leadership
from tamma_sync.store.store import (
    InstancePage,
    InstanceQuery,
    PurgeCutoffs,
    Store,
    WriteResult,
    is_database_unavailable,
)

__all__ = [
    "InstancePage",
    "InstanceQuery",
    "Leadership",
    "PurgeCutoffs",
    "Store",
    "WriteResult",
    "is_database_unavailable",
]
