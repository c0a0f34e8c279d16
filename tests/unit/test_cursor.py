"""Cursors are opaque, signed, and bound to the list and filters that made them."""

from __future__ import annotations

import base64
import json

import pytest

from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import InvalidCursor

KEY = {"PK": "WS#ws_1", "SK": "TASK#t_9", "GSI1PK": "WS#ws_1#TASKS", "GSI1SK": "t_9"}


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentplane.settings import get_settings

    monkeypatch.setenv("TABLE_NAME", "agentplane-unit")
    monkeypatch.setenv("SIGNING_SECRET", "unit-signing-secret-0123456789")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_cursor_resumes_the_same_list_with_the_same_filters() -> None:
    cursor = encode_cursor(KEY, "tasks:ws_1", {"status": "todo"})
    assert decode_cursor(cursor, "tasks:ws_1", {"status": "todo"}) == KEY


def test_no_last_key_means_no_cursor_and_no_cursor_means_the_first_page() -> None:
    assert encode_cursor(None, "tasks:ws_1", {}) is None
    assert decode_cursor(None, "tasks:ws_1", {}) is None


def test_a_filter_left_unset_is_the_same_query_as_one_set_to_none() -> None:
    cursor = encode_cursor(KEY, "tasks:ws_1", {"status": None})
    assert decode_cursor(cursor, "tasks:ws_1", {}) == KEY


@pytest.mark.parametrize(
    ("scope", "query"),
    [("tasks:ws_2", {"status": "todo"}), ("runs:ws_1", {"status": "todo"}), ("tasks:ws_1", {"status": "done"})],
    ids=["another workspace", "another list", "other filters"],
)
def test_a_cursor_replayed_elsewhere_is_refused(scope: str, query: dict[str, str]) -> None:
    cursor = encode_cursor(KEY, "tasks:ws_1", {"status": "todo"})
    with pytest.raises(InvalidCursor, match="another list or other filters"):
        decode_cursor(cursor, scope, query)


def test_a_cursor_whose_key_was_edited_is_refused() -> None:
    cursor = encode_cursor(KEY, "tasks:ws_1", {})
    assert cursor is not None
    body, signature = cursor.split(".", 1)
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["k"]["PK"] = "WS#ws_other"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    with pytest.raises(InvalidCursor, match="not issued by this API"):
        decode_cursor(f"{forged}.{signature}", "tasks:ws_1", {})


@pytest.mark.parametrize("text", ["nodot", "@@@.sig", "é.x"])
def test_text_that_is_no_cursor_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(text, "tasks:ws_1", {})
