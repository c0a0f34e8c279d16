"""Provider connections: a provider's credentials, and the recipe saying how a runner gets them
(environment variables, files).

The credentials are sealed (`crypto.seal`) into the connection and never leave it except to a
runner (`open_credentials`): no answer, audit row or log line carries them. The same transaction
that writes a connection keeps a copy of its values, sealed, in the workspace's deploy secrets
item, so redaction masks them wherever a run repeats them (`logic.known_secrets`); deleting the
connection removes that copy in its own transaction.
"""

from __future__ import annotations

import json
import re

from agentplane import crypto, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.deploy import ConnectionItem, connections_of_workspace
from agentplane.errors import NotFound, PreconditionFailed
from agentplane.ids import iso, new_id
from agentplane.logic import known_secrets
from agentplane.models.deploy import Connection, ConnectionCreate
from agentplane.store import TransactionFailed, get_store

# Ids as minted (`agentplane.ids.new_id`): anything else names no connection and is never looked up.
CONNECTION_ID = re.compile(r"^conn_[0-9a-z]{26}$")


def _secrets_holder(connection_id: str) -> str:
    """The connection's attribute in the workspace's deploy secrets item."""
    return f"connection_{connection_id}"


def load(ws: str, connection_id: str) -> ConnectionItem:
    """The connection, or a 404 problem."""
    connection = (
        get_store().read(ConnectionItem, keys.connection_key(ws, connection_id))
        if CONNECTION_ID.match(connection_id)
        else None
    )
    if connection is None:
        raise NotFound(f"connection {connection_id} not found")
    return connection


def open_credentials(connection: ConnectionItem) -> dict[str, str]:
    """The connection's credentials in the clear, for the runner of one run (never for an answer)."""
    values: dict[str, str] = json.loads(crypto.unseal(connection.sealed, connection.workspace_id))
    return values


def create_connection(access: Access, body: ConnectionCreate) -> Connection:
    ws = access.workspace_id
    values = {name: secret.get_secret_value() for name, secret in body.credentials.items()}
    at = iso()
    connection = ConnectionItem(
        workspace_id=ws,
        id=new_id("conn"),
        name=body.name,
        provider=body.provider,
        description=body.description,
        credential_names=sorted(values),
        recipe=body.effective_recipe().model_dump(),
        sealed=crypto.seal(json.dumps(values), ws),
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    tx = access.transaction()
    tx.create(connection)
    copy = crypto.seal(json.dumps(sorted(values.values())), ws)
    known_secrets.keep_deploy_secret(tx, ws, _secrets_holder(connection.id), copy)
    details = {"name": body.name, "provider": body.provider, "credential_names": sorted(values)}
    access.audit(tx, "connection.created", "connection", connection.id, details)
    access.commit(tx)
    return connection.to_model()


def get_connection(access: Access, connection_id: str) -> Connection:
    return load(access.workspace_id, connection_id).to_model()


def list_connections(
    access: Access, *, provider: str | None, limit: int, cursor: str | None
) -> tuple[list[Connection], str | None]:
    """Oldest first; `provider` keeps that provider's."""
    ws = access.workspace_id
    query = {"provider": provider}
    scope = f"connections:{ws}"
    page = connections_of_workspace(ws, provider=provider, limit=limit, start=decode_cursor(cursor, scope, query))
    return [connection.to_model() for connection in page.items], encode_cursor(page.last_key, scope, query)


def delete_connection(access: Access, connection_id: str) -> None:
    """Deletes the connection and the copy of its credentials redaction keeps. Capsules that bind
    it keep their binding, which now resolves `blocked_missing_connection` (docs/deploy.md)."""
    ws = access.workspace_id
    connection = load(ws, connection_id)
    tx = access.transaction()
    tx.remove(connection)
    known_secrets.keep_deploy_secret(tx, ws, _secrets_holder(connection_id), None)
    details = {"name": connection.name, "provider": connection.provider}
    access.audit(tx, "connection.deleted", "connection", connection_id, details)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if get_store().read(ConnectionItem, connection.key) is None:
            raise NotFound(f"connection {connection_id} not found") from failure
        raise PreconditionFailed(f"connection {connection_id} changed while it was being deleted; retry") from failure
