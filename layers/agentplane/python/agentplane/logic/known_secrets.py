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
from typing import Any, TypeVar

from agentplane import keys
from agentplane.crypto import unseal
from agentplane.entities.agents import AgentApiKeysItem
from agentplane.entities.base import Entity
from agentplane.entities.workspaces import CommonEnvItem
from agentplane.store import Transaction, get_store

E = TypeVar("E", bound=Entity)


def wanted(ws: str) -> list[tuple[type[Entity], keys.Key]]:
    """The items holding the workspace's secrets, to read beside whatever else a write reads
    (`Store.read_each`)."""
    return [(CommonEnvItem, keys.common_env_key(ws)), (AgentApiKeysItem, keys.agent_api_keys_key(ws))]


@lru_cache(maxsize=256)
def _unsealed(ws: str, sealed_json: str) -> str:
    return unseal(json.loads(sealed_json), ws)


def _opened(ws: str, sealed: dict[str, Any]) -> str:
    return _unsealed(ws, json.dumps(sealed, sort_keys=True))


def values_in(ws: str, items: Sequence[Entity | None]) -> tuple[str, ...]:
    """The secret values held by the items `wanted` names (read in that order; absent: None)."""
    env, agent_keys = items
    values: list[str] = []
    if isinstance(env, CommonEnvItem) and env.sealed:
        values += [v for v in json.loads(_opened(ws, env.sealed)).values() if isinstance(v, str) and v]
    if isinstance(agent_keys, AgentApiKeysItem):
        values += [_opened(ws, sealed) for _, sealed in sorted(agent_keys.sealed_keys.items())]
    return tuple(values)


def read(ws: str) -> tuple[str, ...]:
    """The workspace's secret values, for a write that reads nothing else (one BatchGetItem)."""
    return values_in(ws, get_store().read_each(wanted(ws)))


def read_with(entity: type[E], key: keys.Key, ws: str) -> tuple[E | None, tuple[str, ...]]:
    """The item at `key` as `entity` and the workspace's secret values, in one BatchGetItem."""
    item, *secret_items = get_store().read_each([(entity, key), *wanted(ws)])
    return entity.found(item), values_in(ws, secret_items)


def keep_agent_key(tx: Transaction, ws: str, name: str, sealed: dict[str, str] | None) -> None:
    """Keep the copy of agent `name`'s API key in step (set, or removed when None), in the
    agent's own transaction."""
    tx.upsert(AgentApiKeysItem, keys.agent_api_keys_key(ws), AgentApiKeysItem.keeping(ws, name, sealed))
