"""The secret values a workspace stores, which redaction masks wherever an agent's text repeats
them: its common env values and its agents' engine API keys.

Both are sealed (`crypto.seal`) in workspace items: the common env item, and `agent_api_keys_key`,
which holds a copy of each agent's sealed API key (one attribute per agent, written in the same
transaction as the agent's own). A write that redacts reads these items in the BatchGetItem it
reads with anyway (`read_with`), so knowing the secrets costs no extra call. Unsealing is cached by
the sealed blob itself: a changed value is a new cache entry, so nothing goes stale, and a busy run
does not pay a KMS call per write.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from agentplane import keys
from agentplane.crypto import unseal
from agentplane.store import Item, Update, get_store

# The attribute of `agent_api_keys_key` holding an agent's sealed API key: this prefix, then its name.
AGENT_KEY_ATTR_PREFIX = "agent#"


def item_keys(ws: str) -> list[keys.Key]:
    """The items holding the workspace's secrets, to read beside whatever else a write reads."""
    return [keys.common_env_key(ws), keys.agent_api_keys_key(ws)]


@lru_cache(maxsize=256)
def _unsealed(ws: str, sealed_json: str) -> str:
    return unseal(json.loads(sealed_json), ws)


def _opened(ws: str, sealed: dict[str, Any]) -> str:
    return _unsealed(ws, json.dumps(sealed, sort_keys=True))


def values_in(ws: str, items: Sequence[Item | None]) -> tuple[str, ...]:
    """The secret values held by the items `item_keys` names (read in that order; absent: None)."""
    env, agent_keys = items
    values: list[str] = []
    if env and env.get("sealed"):
        values += [v for v in json.loads(_opened(ws, env["sealed"])).values() if isinstance(v, str) and v]
    for name, sealed in sorted((agent_keys or {}).items()):
        if name.startswith(AGENT_KEY_ATTR_PREFIX) and isinstance(sealed, dict):
            values.append(_opened(ws, sealed))
    return tuple(values)


def read(ws: str) -> tuple[str, ...]:
    """The workspace's secret values, for a write that reads nothing else (one BatchGetItem)."""
    return values_in(ws, get_store().get_many(item_keys(ws)))


def read_with(key: keys.Key, ws: str) -> tuple[Item | None, tuple[str, ...]]:
    """The item at `key` and the workspace's secret values, in one BatchGetItem."""
    item, *secret_items = get_store().get_many([key, *item_keys(ws)])
    return item, values_in(ws, secret_items)


def agent_key_update(ws: str, name: str, sealed: dict[str, str] | None) -> tuple[keys.Key, Update]:
    """What keeps `agent_api_keys_key` in step with an agent's API key (set, or removed when None),
    to write in the agent's own transaction."""
    attribute = f"{AGENT_KEY_ATTR_PREFIX}{name}"
    if sealed is None:
        return keys.agent_api_keys_key(ws), Update(remove=[attribute])
    fields = {keys.ENTITY: "agent_api_keys", "workspace_id": ws, attribute: sealed}
    return keys.agent_api_keys_key(ws), Update(set=fields)
