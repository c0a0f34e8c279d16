"""API keys: workspace-bound bearer secrets with scopes, instant revocation, rotation with a grace
period, rolling, and a per-minute usage log.

A key is one record in its workspace (what lists show) plus one token item per secret it has had
(found by hash, as every bearer secret is). The record remembers the hash of the current secret
and of the secrets still inside a rotation grace period, so switching the key off, revoking it or
deleting it reaches every secret that still works, in the same transaction as its audit row.

Making, reading and changing keys is `crud`, ending them `revocation`, replacing their secret
`rolling`, reading their usage log `usage`; what they share is `records` and `grants`. Each
request a key makes is counted at the edge (agentplane.auth.key_usage).
"""

from __future__ import annotations

from agentplane.auth.key_usage import count_request, record_use, reset_pending_usage
from agentplane.logic.api_keys.crud import create_api_key, get_api_key, list_api_keys, update_api_key
from agentplane.logic.api_keys.records import MAX_GRACE_SECRETS, status_of
from agentplane.logic.api_keys.revocation import (
    KeyRevocation,
    delete_api_key,
    live_key_revocations,
    revoke_api_key,
    revoke_keys_made_by,
)
from agentplane.logic.api_keys.rolling import roll_api_key, rotate_api_key
from agentplane.logic.api_keys.usage import get_usage

__all__ = [
    "MAX_GRACE_SECRETS",
    "KeyRevocation",
    "count_request",
    "create_api_key",
    "delete_api_key",
    "get_api_key",
    "get_usage",
    "list_api_keys",
    "live_key_revocations",
    "record_use",
    "reset_pending_usage",
    "revoke_api_key",
    "revoke_keys_made_by",
    "roll_api_key",
    "rotate_api_key",
    "status_of",
    "update_api_key",
]
