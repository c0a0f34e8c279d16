"""The platform's entities: where an API key, an invite and an audit event live follows from their
state (a key leaves its live list once revoked and every list once deleted, an invite its pending
list once accepted or revoked), token records refuse what they cannot hold, and items stored
before they carried their kind read back as the kind their key holds."""

from __future__ import annotations

import pytest

from agentplane import raw_items

WS = "ws_platform"


def _key() -> object:
    from agentplane.entities.api_keys import ApiKeyItem

    return ApiKeyItem(
        id="key_1",
        workspace_id=WS,
        name="ci",
        scopes=["tasks:read"],
        key_prefix="apk_abcdefgh",
        status="active",
        token_hash="h" * 64,
        created_by="usr_1",
        created_at="2026-12-01T00:00:00Z",
        updated_at="2026-12-01T00:00:00Z",
    )


def test_a_revoked_key_leaves_its_live_list_and_a_deleted_one_every_list(store) -> None:
    from agentplane import keys
    from agentplane.entities.api_keys import ApiKeyItem, listed_keys, live_keys

    key = _key()
    store.create(key)
    assert [k.id for k in live_keys(WS, limit=10, start=None).items] == ["key_1"]

    store.change(key, key.assign(status="revoked"))
    stored = raw_items.get(keys.api_key_key(WS, "key_1"))
    assert "GSI2PK" not in stored and stored["GSI1PK"] == keys.api_key_list_gsi(WS)
    assert live_keys(WS, limit=10, start=None).items == []
    assert [k.id for k in listed_keys(WS, limit=10, start=None).items] == ["key_1"]

    revoked = store.read(ApiKeyItem, keys.api_key_key(WS, "key_1"))
    store.change(revoked, revoked.assign(deleted_at="2026-12-02T00:00:00Z"))
    assert "GSI1PK" not in raw_items.get(keys.api_key_key(WS, "key_1"))
    assert listed_keys(WS, limit=10, start=None).items == []


def test_a_key_past_its_expiry_is_expired_unless_revoked() -> None:
    from agentplane.models.api_keys import ApiKeyStatus

    key = _key()
    key.expires_epoch = 1_000
    assert key.status_at(999) is ApiKeyStatus.active
    assert key.status_at(1_000) is ApiKeyStatus.expired
    key.status = "revoked"
    assert key.status_at(1_000) is ApiKeyStatus.revoked


def test_an_invite_is_listed_as_pending_only_until_it_is_accepted() -> None:
    from agentplane import keys
    from agentplane.entities.workspaces import InviteItem

    invite = InviteItem(workspace_id=WS, id="inv_1", email="a@example.com", status="pending")
    invite.stamp()
    index_key = (invite.GSI1PK, invite.GSI1SK)
    assert index_key == (keys.invite_pending_gsi(WS), "inv_1")
    actions = invite.assign(status="accepted")
    removed = invite.restamp()
    assert invite.GSI1PK is None and invite.GSI1SK is None
    assert len(actions) == 1 and len(removed) == 2  # the status, then the index key it leaves


def test_an_audit_event_goes_to_its_workspace_or_to_the_person_it_concerns() -> None:
    from agentplane import audit, keys

    event = audit.new_event(WS, "usr_1", "task.created", "task", "task_1", "req_1", {"api_key": "secret"})
    event.stamp()
    assert event.key == keys.audit_key(WS, event.id)
    assert event.details == {"api_key": "[redacted]"}
    own = audit.new_event("", "usr_1", "profile.updated", "user", "usr_1", user_id="usr_1")
    own.stamp()
    assert own.key == keys.account_audit_key("usr_1", own.id) and own.workspace_id is None
    assert "workspace_id" not in own.as_item() and own.as_item()["user_id"] == "usr_1"


def test_a_token_record_refuses_what_it_does_not_declare() -> None:
    from agentplane.auth import tokens

    record = tokens.token_item("aps_secret", kind="session", token_id="ses_1", principal_id="usr_1",
                               user_id="usr_1", extra={"site_owner": True})  # fmt: skip
    assert record["kind"] == "session" and record["site_owner"] is True and record["scopes"] == ["*"]
    with pytest.raises(TypeError, match="gadget"):
        tokens.token_item("aps_secret", kind="session", token_id="ses_1", principal_id="usr_1", user_id="usr_1",
                          extra={"gadget": 1})  # fmt: skip


def test_a_claim_stored_without_its_kind_reads_back_as_a_claim(store) -> None:
    from agentplane import keys
    from agentplane.entities.accounts import DeviceItem, UniqueItem

    claim_key = keys.push_token_claim_key("digest")
    raw_items.put({**claim_key, "user_id": "usr_2", "device_id": "dev_1"})
    device, claim = store.read_each([(DeviceItem, keys.device_key("usr_1", "dev_1")), (UniqueItem, claim_key)])
    assert device is None
    assert isinstance(claim, UniqueItem) and (claim.user_id, claim.device_id) == ("usr_2", "dev_1")
