"""Ending keys: revoking one for good, deleting one (soft: revoked, listed nowhere, 404), and
revoking many at once as their workspace is deleted or the member who made them leaves."""

from __future__ import annotations

from dataclasses import dataclass

from agentplane import keys
from agentplane.access import Access
from agentplane.entities.api_keys import ApiKeyItem, ApiKeyUsageTotalItem, every_key
from agentplane.entities.tokens import TokenItem
from agentplane.errors import InvalidTransition
from agentplane.ids import iso
from agentplane.logic.api_keys.records import commit, guarded, load_live, now, revoke_token, to_key, working_hashes
from agentplane.models.api_keys import ApiKey, ApiKeyStatus
from agentplane.store import Transaction, TransactionFailed, get_store


def revoke_api_key(access: Access, key_id: str) -> ApiKey:
    """Revoke for good: every secret of the key is refused from the next call on."""
    ws = access.workspace_id
    key = load_live(ws, key_id)
    if key.status == ApiKeyStatus.revoked:
        raise InvalidTransition(f"API key {key_id} is already revoked", current_status=ApiKeyStatus.revoked.value)
    at_epoch = now()
    at = iso()
    secrets = working_hashes(key, at_epoch)
    tx = guarded(access, secrets)
    ended = key.assign(
        status=ApiKeyStatus.revoked.value, revoked_at=at, updated_at=at, grace_tokens=[], previous_key_expires_at=None
    )
    tx.change(key, ended, ApiKeyItem.deleted_at.does_not_exist())
    for token_hash in secrets:
        revoke_token(tx, access, token_hash, at_epoch)
    access.audit(tx, "api_key.revoked", "api_key", key_id)
    commit(access, tx, ws, key_id, "revoked")
    return to_key(key)


def delete_api_key(access: Access, key_id: str) -> None:
    """Soft delete: the key is revoked, leaves every list and answers 404; its audit trail stays."""
    ws = access.workspace_id
    key = load_live(ws, key_id)
    at_epoch = now()
    at = iso()
    secrets = working_hashes(key, at_epoch) if key.status != ApiKeyStatus.revoked else []
    tx = guarded(access, secrets)
    ended = key.assign(
        deleted_at=at,
        status=ApiKeyStatus.revoked.value,
        revoked_at=key.revoked_at or at,
        grace_tokens=[],
        previous_key_expires_at=None,
        updated_at=at,
    )
    tx.change(key, ended, ApiKeyItem.deleted_at.does_not_exist())
    for token_hash in secrets:
        revoke_token(tx, access, token_hash, at_epoch)
    # Its usage log answers 404 from now on, like the key.
    usage_total = keys.api_key_usage_total_key(ws, key_id)
    tx.upsert(ApiKeyUsageTotalItem, usage_total, [ApiKeyUsageTotalItem.deleted_at.set(at)])
    access.audit(tx, "api_key.deleted", "api_key", key_id)
    commit(access, tx, ws, key_id, "deleted")


@dataclass
class KeyRevocation:
    """What revokes one live key, to add to one transaction: its secrets first, then its record
    (only if it is still as it was read)."""

    key: ApiKeyItem
    token_hashes: list[str]
    at: int  # epoch seconds, on the secrets
    at_iso: str  # on the record

    @property
    def size(self) -> int:
        """The operations it adds to a transaction."""
        return len(self.token_hashes) + 1

    def add_to(self, tx: Transaction) -> None:
        for token_hash in self.token_hashes:
            tx.upsert(TokenItem, keys.token_key(token_hash), [TokenItem.revoked.set(self.at)])
        ended = self.key.assign(
            status=ApiKeyStatus.revoked.value,
            revoked_at=self.at_iso,
            grace_tokens=[],
            previous_key_expires_at=None,
            updated_at=self.at_iso,
        )
        tx.change(self.key, ended)


def live_key_revocations(ws: str, made_by: str | None = None) -> list[KeyRevocation]:
    """What revokes every live key of a workspace (being deleted), or every API key one member
    made (leaving it), one per key. A key whose revocation did not commit is still live and is
    found again when the caller resumes, so each may be committed on its own."""
    at, at_iso = now(), iso()
    revocations = []
    for key in every_key(ws):
        if key.deleted_at or key.status == ApiKeyStatus.revoked:
            continue
        if made_by is not None and key.user_id != made_by:
            continue
        revocations.append(KeyRevocation(key, working_hashes(key, at), at, at_iso))
    return revocations


def revoke_keys_made_by(ws: str, user_id: str) -> int:
    """Revoke the API keys a member made, as they leave the workspace: listed `revoked`, and
    dead for good even if they are added again. One key per transaction; a key that changed
    meanwhile is found again by the next pass (at most three)."""
    revoked = 0
    for _ in range(3):
        pending = live_key_revocations(ws, made_by=user_id)
        if not pending:
            return revoked
        for revocation in pending:
            tx = get_store().transaction()
            revocation.add_to(tx)
            try:
                tx.commit()
                revoked += 1
            except TransactionFailed:
                continue
    return revoked
