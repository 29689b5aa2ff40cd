"""Keeping a mirror of ELSA sources: the sync algorithm and where it writes."""

from tamma_sync.settings import DetailsPolicy
from tamma_sync.sync.options import CycleReport, SyncOptions
from tamma_sync.sync.runner import SyncRunner
from tamma_sync.sync.service import SyncService
from tamma_sync.sync.sink import HttpSink, Sink, StoreSink

__all__ = [
    "CycleReport",
    "DetailsPolicy",
    "HttpSink",
    "Sink",
    "StoreSink",
    "SyncOptions",
    "SyncRunner",
    "SyncService",
]
