"""Bearer token records: one item per secret, found by the secret's hash (sessions, refresh tokens,
personal access tokens, API and agent keys, invites, shares and password resets alike)."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, Keys, ListDocument, number

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition


class TokenItem(Entity, discriminator="token"):
    token_hash = UnicodeAttribute()  # the secret's hash: its key
    token_kind = UnicodeAttribute(attr_name="kind")  # session, refresh, pat, api_key, agent_key, invite...
    token_id = UnicodeAttribute()
    principal_id = UnicodeAttribute()
    user_id = UnicodeAttribute(null=True)
    scopes = ListDocument()
    workspace_id = UnicodeAttribute(null=True)
    expires_at = number(null=True)  # epoch seconds
    sliding_seconds = number(null=True)
    created_at = number()  # epoch seconds
    ttl = EpochTTL(attr_name=keys.TTL, null=True)
    revoked = number(null=True)  # epoch seconds: refused from then on
    last_used_at = number(null=True)  # personal access tokens
    # What a kind of token carries besides (`extra` when it is issued).
    agent_name = UnicodeAttribute(null=True)  # agent keys
    site_owner = BooleanAttribute(null=True)  # sessions and personal access tokens
    role = UnicodeAttribute(null=True)  # invites
    invited_by = UnicodeAttribute(null=True)  # invites
    used_at = number(null=True)  # invites: accepted once
    used_by = UnicodeAttribute(null=True)
    thread_id = UnicodeAttribute(null=True)  # shares
    share_id = UnicodeAttribute(null=True)

    def where(self) -> Keys:
        return Keys(keys.token_key(self.token_hash))

    @classmethod
    def live(cls, now: int | None = None) -> Condition:
        """The record still lets its secret in: present, not revoked, not expired."""
        at = int(time.time()) if now is None else now
        unexpired: Condition = cls.expires_at.does_not_exist() | (cls.expires_at > at)
        live: Condition = cls.PK.exists() & cls.revoked.does_not_exist() & unexpired
        return live


def expiry(epoch: int) -> dt.datetime:
    """An epoch-seconds time as a TTL attribute's value (what its update actions take)."""
    return dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC)
