"""The secret values a workspace stores, which redaction masks wherever an agent's text repeats
them: its common env values, its agents' engine API keys, and what deploy control holds (its
provider connections' credentials, its capsules' sensitive outputs).

All are sealed (`crypto.seal`) in workspace items: the common env item; `agent_api_keys_key`,
which holds a copy of each agent's sealed API key (one attribute per agent, written in the same
transaction as the agent's own); and `deploy_secrets_key`, which holds a copy of each deploy
holder's values as one sealed JSON list (one attribute per connection or capsule, written in the
same transaction as the holder). A write that redacts reads these items in the BatchGetItem it
reads with anyway (`read_with`), so knowing the secrets costs no extra call. Unsealing is cached by
the sealed blob itself: a changed value is a new cache entry, so nothing goes stale, and a busy run
does not pay a KMS call per write.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from agentplane import keys
from agentplane.crypto import unseal
from agentplane.entities.base import Entity
from agentplane.entities.secrets import AgentApiKeysItem, DeploySecretsItem
from agentplane.entities.workspaces import CommonEnvItem
from agentplane.store import Transaction, get_store

E = TypeVar("E", bound=Entity)


def wanted(ws: str) -> list[tuple[type[Entity], keys.Key]]:
    """The items holding the workspace's secrets, to read beside whatever else a write reads
    (`Store.read_each`)."""
    return [
        (CommonEnvItem, keys.common_env_key(ws)),
        (AgentApiKeysItem, keys.agent_api_keys_key(ws)),
        (DeploySecretsItem, keys.deploy_secrets_key(ws)),
    ]


@lru_cache(maxsize=256)
def _unsealed(ws: str, sealed_json: str) -> str:
    return unseal(json.loads(sealed_json), ws)


def _opened(ws: str, sealed: dict[str, Any]) -> str:
    return _unsealed(ws, json.dumps(sealed, sort_keys=True))


def _strings(value: Any) -> Iterator[str]:
    """The non-empty strings of a JSON value (an output may be a map or a list of them), numbers
    as their text (a sensitive output may be an account number); redaction leaves short ones be."""
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, Mapping):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def values_in(ws: str, items: Sequence[Entity | None]) -> tuple[str, ...]:
    """The secret values held by the items `wanted` names (read in that order; absent: None)."""
    env, agent_keys, deploy = items
    values: list[str] = []
    if isinstance(env, CommonEnvItem) and env.sealed:
        values += [v for v in json.loads(_opened(ws, env.sealed)).values() if isinstance(v, str) and v]
    if isinstance(agent_keys, AgentApiKeysItem):
        values += [_opened(ws, sealed) for _, sealed in sorted(agent_keys.sealed.items())]
    if isinstance(deploy, DeploySecretsItem):
        for _, sealed in sorted(deploy.sealed.items()):
            values += _strings(json.loads(_opened(ws, sealed)))
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


def keep_deploy_secret(tx: Transaction, ws: str, holder: str, sealed: dict[str, str] | None) -> None:
    """Keep the copy of deploy `holder`'s sealed values (`connection_<id>`, `outputs_<capsule id>`:
    a sealed JSON list) in step (set, or removed when None), in the holder's own transaction."""
    tx.upsert(DeploySecretsItem, keys.deploy_secrets_key(ws), DeploySecretsItem.keeping(ws, holder, sealed))
