"""The change feed: brokers that wake it, and subscriptions it fills from the change log."""

from tamma_sync.feed.broker import Broker, MemoryBroker, PostgresBroker, broker_for
from tamma_sync.feed.feed import ChangeFeed, ChangeFilter, EndReason, Subscription

__all__ = [
    "Broker",
    "ChangeFeed",
    "ChangeFilter",
    "EndReason",
    "MemoryBroker",
    "PostgresBroker",
    "Subscription",
    "broker_for",
]
