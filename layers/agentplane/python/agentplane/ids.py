"""Identifiers and clocks. IDs are a type prefix plus a time-ordered, unguessable suffix."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

# Path parameters are ids, names, slugs or secrets: letters, digits and `_.:-`, never this long.
# Anything else cannot name a stored item, and must not reach DynamoDB as an over-size key.
MAX_PATH_ID_LENGTH = 200
_PATH_ID = re.compile(r"[A-Za-z0-9_.:-]+")


def is_path_id(value: str) -> bool:
    return len(value) <= MAX_PATH_ID_LENGTH and _PATH_ID.fullmatch(value) is not None


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """`prefix_` + 10 chars of milliseconds + 16 random chars (80 bits): sorts by creation time."""
    millis = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(millis, 10)}{_encode(rand, 16)}"


def new_id_after(prefix: str, floor: str | None) -> str:
    """A `new_id(prefix)` that sorts after `floor` (an id of the same prefix), even when this
    clock is behind the one that minted `floor`: then it is `floor` plus a random step."""
    minted = new_id(prefix)
    if floor is None or minted > floor:
        return minted
    suffix = floor.removeprefix(f"{prefix}_")
    value = 0
    for char in suffix:
        value = value * 32 + _CROCKFORD.index(char)
    step = 1 + int.from_bytes(os.urandom(5), "big")
    return f"{prefix}_{_encode(value + step, len(suffix))}"


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None = None) -> str:
    """ISO-8601 UTC with a `Z`, millisecond precision: sorts lexically in time order."""
    moment = moment or now()
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def epoch(moment: datetime | None = None) -> int:
    return int((moment or now()).timestamp())


def id_range(prefix: str, start: datetime, end: datetime) -> tuple[str, str]:
    """The lowest and highest ids `new_id(prefix)` can mint from `start` to `end` inclusive, so a
    key range over time-ordered ids selects a time window."""
    low = f"{prefix}_{_encode(int(start.timestamp() * 1000), 10)}"
    high = f"{prefix}_{_encode(int(end.timestamp() * 1000), 10)}{_CROCKFORD[-1] * 16}"
    return low, high
