"""Rate limits' bookkeeping: a counter per principal and minute window, and for the strict limits
a log of the calls admitted in the last minute. Both are only ever written by key (an update
that creates them on first use), never whole, so they say where they live through their keys'
builders (`keys.rate_key`, `keys.rate_log_key`) at the call."""

from __future__ import annotations

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, ListDocument, number


class RateWindowItem(Entity, discriminator="rate_window"):
    calls = number(attr_name="count", default=0)  # counted in the window so far
    ttl = EpochTTL(attr_name=keys.TTL, null=True)


class RateLogItem(Entity, discriminator="rate_log"):
    hits = ListDocument(default=list)  # epoch seconds of the calls admitted lately
    writes = number(default=0)  # every write adds one: a prune only lands on what it read
    ttl = EpochTTL(attr_name=keys.TTL, null=True)
