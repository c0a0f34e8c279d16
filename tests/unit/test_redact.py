"""Redaction: every fake secret of the corpus, in every context agents write it in, is masked, and
ordinary text (prose, commit SHAs, UUIDs, paths) is left alone."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from agentplane.redact import MASK, redact_text, redact_value
from tests.fixtures.secret_corpus import CONTEXTS, ORDINARY_TEXT, SECRETS, encodings, fake

KNOWN = "hunter2-database-password"


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("secret", SECRETS, ids=lambda secret: secret.name)
def test_every_secret_is_masked_in_every_context(secret, context):
    written = CONTEXTS[context](secret.text)

    redacted = redact_text(written)

    assert MASK in redacted
    for needle in secret.needles:
        for form in encodings(needle):
            assert form not in redacted, (form, redacted)


@pytest.mark.parametrize("text", ORDINARY_TEXT)
def test_ordinary_text_is_left_alone(text):
    assert redact_text(text) == text


def test_only_the_secret_is_masked_and_its_surroundings_are_kept():
    token = fake("github ghp")

    assert redact_text(f"TOKEN_{token} and AKIA is a prefix") == f"TOKEN_{MASK} and AKIA is a prefix"
    assert redact_text(f"Authorization: Bearer {token}") == f"Authorization: Bearer {MASK}"
    assert redact_text(f"https://x.example/cb?token%3D{token}&page=2") == f"https://x.example/cb?token%3D{MASK}&page=2"
    assert redact_text("postgres://app:s3cret-pw@db:5432/app") == f"postgres://app:{MASK}@db:5432/app"
    assert redact_text('{"password": "correct horse battery"}') == f'{{"password": "{MASK}"}}'


def test_a_base64_blob_holding_a_secret_is_masked_whole():
    token = fake("openai key")
    blob = base64.b64encode(f"OPENAI_API_KEY={token}\nDEBUG=1\n".encode()).decode()

    assert redact_text(f"secret.yaml: data: {blob} (applied)") == f"secret.yaml: data: {MASK} (applied)"


def test_a_known_value_is_masked_in_its_encodings():
    forms = [
        KNOWN,
        quote(KNOWN, safe=""),
        quote_plus(f"{KNOWN} and more"),
        json.dumps(KNOWN).replace("-", "\\u002d"),
        base64.b64encode(KNOWN.encode()).decode(),
        base64.urlsafe_b64encode(KNOWN.encode()).decode().rstrip("="),
        base64.b64encode(f"DB_PASSWORD={KNOWN}".encode()).decode(),
    ]
    for form in forms:
        redacted = redact_text(f"connecting with {form} now", [KNOWN])
        assert MASK in redacted and form not in redacted and KNOWN not in redacted, (form, redacted)


def test_short_known_values_are_not_masked():
    assert redact_text("the word pass is ordinary", ["pass"]) == "the word pass is ordinary"


def test_values_are_redacted_all_the_way_down_keys_included():
    token = fake("google api key")

    redacted = redact_value({"steps": [{"env": {KNOWN: token}}, 3, None], "note": f"key_{token}"}, [KNOWN])

    assert redacted == {"steps": [{"env": {MASK: MASK}}, 3, None], "note": f"key_{MASK}"}
