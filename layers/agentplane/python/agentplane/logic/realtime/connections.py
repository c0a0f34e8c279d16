"""Connections: checked once, on `$connect`, with the same bearer tokens as the HTTP API, and
remembered for two hours (API Gateway's longest connection)."""

from __future__ import annotations

from dataclasses import dataclass

from agentplane import keys
from agentplane.auth.principal import Principal
from agentplane.auth.tokens import resolve_principal
from agentplane.entities.realtime import (
    RealtimeConnectionItem,
    RealtimeConnectionSubscriptionItem,
    RealtimeSubscriberItem,
    connection_records,
)
from agentplane.entities.tokens import TokenItem
from agentplane.errors import Conflict, Unauthorized
from agentplane.ids import epoch, iso
from agentplane.observability import logger
from agentplane.store import TransactionFailed, get_store, retrying

# API Gateway closes every WebSocket connection after two hours; its records go with it (TTL).
CONNECTION_TTL_SECONDS = 2 * 3600
MAX_SUBSCRIPTIONS_PER_CONNECTION = 20
_CLEANUP_ATTEMPTS = 3


@dataclass(frozen=True)
class Connection:
    connection_id: str
    principal: Principal
    expires_at: int


def _to_connection(record: RealtimeConnectionItem) -> Connection:
    # Memberships are deliberately not carried over: every subscribe reads the membership afresh.
    principal = Principal(
        kind=record.principal_kind,
        id=record.principal_id,
        user_id=record.user_id,
        token_id=record.token_id,
        token_hash=record.token_hash,
        scopes=frozenset(record.scopes or []),
        workspace_id=record.workspace_id,
        agent_name=record.agent_name,
        memberships={},
    )
    return Connection(record.connection_id, principal, int(record.expires_at))


def connect(connection_id: str, token: str | None) -> Connection:
    """Accept a connection for a valid bearer token (Unauthorized otherwise) and remember who holds it."""
    if not token:
        raise Unauthorized("a bearer token is required: connect with ?token=<token>")
    principal = resolve_principal(token)
    expires_at = epoch() + CONNECTION_TTL_SECONDS
    record = RealtimeConnectionItem(
        connection_id=connection_id,
        principal_kind=principal.kind,
        principal_id=principal.id,
        user_id=principal.user_id,
        token_id=principal.token_id,
        token_hash=principal.token_hash,
        scopes=sorted(principal.scopes),
        workspace_id=principal.workspace_id,
        agent_name=principal.agent_name,
        subscription_count=0,
        connected_at=iso(),
        expires_at=expires_at,
        ttl=expires_at,
    )
    get_store().save(record)
    return _to_connection(record)


def registered(connection_id: str) -> Connection | None:
    """The connection as `$connect` registered it; None when unknown or expired."""
    record = get_store().read(RealtimeConnectionItem, keys.realtime_connection_key(connection_id))
    return None if record is None or record.expired() else _to_connection(record)


def load_connection(connection_id: str) -> Connection:
    connection = registered(connection_id)
    if connection is None:
        raise Unauthorized("this connection is not registered (or has expired); reconnect")
    return connection


def require_live_token(principal: Principal) -> None:
    token = get_store().read(TokenItem, keys.token_key(principal.token_hash))
    expires_at = int((token.expires_at if token else None) or 0)
    if token is None or token.revoked is not None or (expires_at and expires_at <= epoch()):
        raise Unauthorized("the token is invalid, expired or revoked; reconnect with a valid one")


def disconnect(connection_id: str) -> int:
    """Forget a connection and every subscription it holds; the number of subscriptions removed."""
    return remove_connection(connection_id)


def remove_connection(connection_id: str) -> int:
    """Remove a connection's records and its subscribers from their channels, in one transaction
    (records may have expired already: each goes whether or not it is still there)."""

    def attempt() -> int:
        records = connection_records(connection_id, limit=MAX_SUBSCRIPTIONS_PER_CONNECTION + 1)
        if not records:
            return 0
        tx = get_store().transaction()
        removed = 0
        for record in records:
            if isinstance(record, RealtimeConnectionSubscriptionItem):
                subscriber = keys.realtime_subscriber_key(record.workspace_id, record.channel_key, connection_id)
                tx.discard(RealtimeSubscriberItem, subscriber)
                removed += 1
            tx.discard(type(record), record.key)
        try:
            tx.commit()
        except TransactionFailed as failure:
            # A subscribe of this very connection raced us: read its records again.
            logger.info("connection cleanup retried", extra={"reasons": failure.reasons})
            raise
        return removed

    try:
        return retrying(
            attempt, retry_if=lambda failure: isinstance(failure, TransactionFailed), attempts=_CLEANUP_ATTEMPTS
        )
    except TransactionFailed as failure:
        raise Conflict("the connection changed while it was being removed; retry") from failure
