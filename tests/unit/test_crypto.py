from __future__ import annotations

import pytest


def test_sealed_value_opens_only_in_its_workspace(stack):
    from agentplane import clients, crypto

    clients.reset()
    sealed = crypto.seal("sk-live-123456", "ws_a")
    assert "sk-live-123456" not in str(sealed)
    assert crypto.unseal(sealed, "ws_a") == "sk-live-123456"
    with pytest.raises(Exception):
        crypto.unseal(sealed, "ws_b")


def test_mask_never_shows_more_than_four_characters():
    from agentplane.crypto import mask

    assert mask("sk-live-123456") == "••••3456"
    assert mask("short") == "••••"
