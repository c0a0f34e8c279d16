"""Secret redaction for anything an agent reports (run events, summaries, command output, logs).

Two kinds of secret are found: values the workspace is known to hold (exact matches), and common
token shapes (cloud keys, bearer tokens, private keys, our own token prefixes). A shape is found
wherever it sits, glued to other words too (`TOKEN_ghp_…`, `xAKIA…`): a pattern starts at the
secret's own prefix and runs to the end of the secret's alphabet, and shapes whose prefix also
ends ordinary words (`task-`, `maps_`) must look random as well. Encoded text is read decoded too:
percent-encoding (and `+` for a space), JSON string escapes, and base64 blobs, each layer within
the next; a secret found in decoded text masks its encoded form, a base64 blob as a whole.

Redaction happens before anything is stored, so a leaked secret never reaches the table, the
stream or a subscriber.
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MASK = "[REDACTED]"
# Shorter known values are not masked: they would match ordinary words.
MIN_KNOWN_SECRET_LENGTH = 6
# Encodings are read this many layers deep (base64 of a percent-encoded value is two).
MAX_DECODING_DEPTH = 3


def _random_looking(body: str) -> bool:
    """Generated keys mix both cases evenly and carry digits; words, paths, CamelCase names and
    lowercase ids (which also follow `task-`, `maps_`, `api_`) do not."""
    letters = [c for c in body if c.isalpha()]
    if not letters:
        return False
    upper_share = sum(c.isupper() for c in letters) / len(letters)
    return 0.15 <= upper_share <= 0.85 and (len(body) >= 40 or any(c.isdigit() for c in body))


def _not_a_word(value: str) -> bool:
    """A plain word or name is no secret ("bearer certificates", "token: everything", "API_KEY"); a
    key has a digit, a symbol or mixed case."""
    mixed_case = any(c.islower() for c in value) and any(c.isupper() for c in value[1:])
    return mixed_case or any(c.isdigit() or c in ".+/=$" for c in value)


def _basic_credentials(value: str) -> bool:
    """`Basic` is followed by base64 of user:password; the word basic is followed by prose."""
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return ":" in decoded and decoded.isprintable()


@dataclass(frozen=True)
class _Shape:
    """A secret's shape. The `secret` group (else the whole match) is masked; `check`, when set,
    decides whether a match is a secret at all."""

    pattern: re.Pattern[str]
    check: Callable[[re.Match[str]], bool] | None = None


_SHAPES: tuple[_Shape, ...] = (
    _Shape(
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.S,
        )
    ),
    _Shape(re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16,}")),  # AWS access key ids
    _Shape(re.compile(r"(?i:secret_?access_?key)[\"']?\s*[=:]\s*[\"']?(?P<secret>[A-Za-z0-9/+]{40,})")),  # AWS
    _Shape(
        re.compile(r"(?i:bearer)\s+(?P<secret>[A-Za-z0-9_~+/-]+(?:\.[A-Za-z0-9_~+/-]+)*=*)"),
        lambda m: len(m["secret"]) >= 12 and _not_a_word(m["secret"]),
    ),
    _Shape(re.compile(r"(?i:basic)\s+(?P<secret>[A-Za-z0-9+/]{8,}={0,2})"), lambda m: _basic_credentials(m["secret"])),
    _Shape(re.compile(r"://[^\s/:@]+:(?P<secret>[^\s/@]+)@")),  # a password in a URL
    _Shape(re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}")),  # GitHub tokens
    _Shape(re.compile(r"github_pat_[A-Za-z0-9_]{20,}")),
    _Shape(re.compile(r"(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]{10,}")),  # Slack tokens
    _Shape(re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/-]{16,})")),
    _Shape(re.compile(r"[rsp]k_(?:live|test)_(?P<body>[A-Za-z0-9]{10,})"), lambda m: _not_a_word(m["body"])),  # Stripe
    _Shape(re.compile(r"whsec_[A-Za-z0-9+/]{20,}=*")),  # Stripe webhook secrets
    _Shape(re.compile(r"sk-(?P<body>[A-Za-z0-9_-]{20,})"), lambda m: _random_looking(m["body"])),  # OpenAI, Anthropic
    _Shape(re.compile(r"AIza[0-9A-Za-z_-]{35,}")),  # Google API keys
    _Shape(re.compile(r"ap[srpkaihw]_(?P<body>[A-Za-z0-9_-]{20,})"), lambda m: _random_looking(m["body"])),  # ours
    _Shape(re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),  # JWTs
    _Shape(
        re.compile(
            r"(?i:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key)[\"']?\s*(?P<sep>[=:])\s*"
            r"(?P<quote>[\"'])?(?P<secret>(?(quote)[^\"'\n]{6,}|[^\s'\",;&]{6,}))"  # a quoted value may hold spaces
        ),
        lambda m: m["sep"] == "=" or m["quote"] is not None or _not_a_word(m["secret"]),
    ),
)

# ---------------------------------------------------------------------------------- encodings

_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}|\+")
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|[\"\\/bfnrt])")
_JSON_CHARS = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# Base64 (standard or URL-safe), on one line or wrapped the way `base64` and PEM wrap it.
_BASE64_BLOB = re.compile(r"(?:[A-Za-z0-9+/_-]{60,}\r?\n)+[A-Za-z0-9+/_-]+=*|[A-Za-z0-9+/_-]{16,}=*")
_TO_STANDARD_BASE64 = str.maketrans("-_", "+/")
# What decoded binary is made of: control characters and undecodable bytes (U+FFFD).
_UNREADABLE = re.compile(r"[^\t\n\r\x20-\x7e\u00a0-\ufffc]")


def _percent_char(escape: str) -> str:
    return " " if escape == "+" else chr(int(escape[1:], 16))


def _json_char(escape: str) -> str:
    return chr(int(escape[2:], 16)) if escape[1] == "u" else _JSON_CHARS[escape[1]]


class _Decoded:
    """`source` with one kind of escape decoded, and where each stretch of it came from in `source`."""

    def __init__(self, source: str, escape: re.Pattern[str], decode: Callable[[str], str]) -> None:
        parts: list[str] = []
        self._starts: list[int] = []  # where each segment starts in the decoded text
        self._origins: list[tuple[int, int]] = []  # where it came from in the source
        self._escapes: list[bool] = []  # an escape decodes to one character; plain text is copied
        length = copied = 0
        for match in escape.finditer(source):
            if match.start() > copied:
                length = self._segment(parts, source[copied : match.start()], length, (copied, match.start()), False)
            length = self._segment(parts, decode(match.group()), length, match.span(), True)
            copied = match.end()
        if copied < len(source):
            self._segment(parts, source[copied:], length, (copied, len(source)), False)
        self.text = "".join(parts)

    def _segment(self, parts: list[str], text: str, length: int, origin: tuple[int, int], escape: bool) -> int:
        parts.append(text)
        self._starts.append(length)
        self._origins.append(origin)
        self._escapes.append(escape)
        return length + len(text)

    def origin(self, start: int, end: int) -> tuple[int, int]:
        """The stretch of the source that decodes to text[start:end]."""
        first = bisect_right(self._starts, start) - 1
        last = bisect_right(self._starts, end - 1) - 1
        (first_start, _), (last_start, last_end) = self._origins[first], self._origins[last]
        begin = first_start if self._escapes[first] else first_start + start - self._starts[first]
        finish = last_end if self._escapes[last] else last_start + end - self._starts[last]
        return begin, finish


def _decodings(text: str) -> Iterator[_Decoded]:
    for escape, decode in ((_PERCENT_ESCAPE, _percent_char), (_JSON_ESCAPE, _json_char)):
        if escape.search(text):
            yield _Decoded(text, escape, decode)


def _base64_readings(blob: str) -> Iterator[str]:
    """The text a base64 blob holds, read from each of four offsets (so a blob glued to a word
    still decodes); readings that come out binary are skipped."""
    compact = "".join(blob.split()).rstrip("=").translate(_TO_STANDARD_BASE64)
    for offset in range(4):
        chunk = compact[offset:]
        if len(chunk) % 4 == 1:  # a lone trailing character holds no whole byte
            chunk = chunk[:-1]
        reading = base64.b64decode(chunk + "=" * (-len(chunk) % 4)).decode("utf-8", "replace")
        if reading and len(_UNREADABLE.findall(reading)) * 4 <= len(reading):
            yield reading


# ------------------------------------------------------------------------------------ finding


@lru_cache(maxsize=64)
def _known_pattern(known: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation of the known values and their base64 forms, longest first (a base64 form
    too short to be read as a blob is still found this way)."""
    needles: set[str] = set()
    for value in known:
        if len(value) < MIN_KNOWN_SECRET_LENGTH:
            continue
        encoded = base64.b64encode(value.encode()).decode()
        needles |= {value, encoded, encoded.rstrip("="), base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")}
    if not needles:
        return None
    return re.compile("|".join(re.escape(needle) for needle in sorted(needles, key=len, reverse=True)))


def _secret_spans(text: str, known: re.Pattern[str] | None, depth: int = 0) -> list[tuple[int, int]]:
    """Where `text` holds a secret, directly or in one of its encodings."""
    spans = [m.span() for m in known.finditer(text)] if known else []
    for shape in _SHAPES:
        for match in shape.pattern.finditer(text):
            if shape.check is None or shape.check(match):
                spans.append(match.span("secret") if "secret" in shape.pattern.groupindex else match.span())
    if depth >= MAX_DECODING_DEPTH:
        return spans
    for decoded in _decodings(text):
        spans += [decoded.origin(start, end) for start, end in _secret_spans(decoded.text, known, depth + 1)]
    for blob in _BASE64_BLOB.finditer(text):
        if any(_secret_spans(reading, known, depth + 1) for reading in _base64_readings(blob.group())):
            spans.append(blob.span())
    return spans


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every secret found replaced by MASK (overlapping or touching finds masked once)."""
    merged: list[list[int]] = []
    for start, end in sorted(_secret_spans(text, _known_pattern(tuple(known)))):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts: list[str] = []
    copied = 0
    for start, end in merged:
        parts += [text[copied:start], MASK]
        copied = end
    parts.append(text[copied:])
    return "".join(parts)


def redact_value(value: Any, known: Iterable[str] = ()) -> Any:
    """Redact every string inside `value` (dicts, lists and scalars), keys included."""
    known = tuple(known)
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, dict):
        return {redact_text(str(k), known): redact_value(v, known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, known) for v in value]
    return value
