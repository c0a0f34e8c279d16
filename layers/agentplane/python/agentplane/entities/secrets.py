"""The items that keep sealed copies of a workspace's secrets, so that redaction reads them all
with one BatchGetItem (logic.known_secrets): the agents' engine API keys, and deploy control's
connection credentials and sensitive outputs. Kept apart from their families' entities so that
every function that redacts loads these few classes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pynamodb.attributes import UnicodeAttribute
from pynamodb.expressions.operand import Path

from agentplane import keys
from agentplane.entities.base import Entity, Keys, MapDocument

if TYPE_CHECKING:
    from pynamodb.expressions.update import Action


class SealedCopies(Entity):
    """A workspace item holding a copy of sealed secrets, one attribute per holder (named by the
    class's `holder_prefix` and the holder), so redaction reads a whole kind of them with one key;
    each copy is kept in step in its holder's own transaction (`keeping`)."""

    holder_prefix: ClassVar[str]
    workspace_id = UnicodeAttribute()

    @property
    def sealed(self) -> dict[str, dict[str, Any]]:
        """Each holder's sealed copy, by attribute name."""
        return dict(getattr(self, "_sealed", {}))

    def read_undeclared(self, raw: Mapping[str, Any]) -> None:
        self._sealed = {
            name: MapDocument().deserialize(value["M"])
            for name, value in raw.items()
            if name.startswith(self.holder_prefix) and "M" in value
        }

    @classmethod
    def keeping(cls, ws_id: str, holder: str, sealed: Mapping[str, str] | None) -> list[Action]:
        """The update actions keeping `holder`'s copy in step (set, or removed when None); the item
        is made by its first holder (`upsert`)."""
        attribute = Path([f"{cls.holder_prefix}{holder}"])
        if sealed is None:
            return [attribute.remove()]
        return [cls.workspace_id.set(ws_id), attribute.set(dict(sealed))]


class AgentApiKeysItem(SealedCopies, discriminator="agent_api_keys"):
    """A copy of every agent's sealed engine API key, one attribute per agent (`agent#` and the
    agent's name), so redaction reads them all with one key."""

    holder_prefix = "agent#"

    def where(self) -> Keys:
        return Keys(keys.agent_api_keys_key(self.workspace_id))


class DeploySecretsItem(SealedCopies, discriminator="deploy_secrets"):
    """A copy of each secret deploy control holds, one attribute per holder (`secret_` and
    `connection_<id>` or `outputs_<capsule id>`), each a sealed JSON list of the values, so
    redaction reads every one of them with one key."""

    holder_prefix = "secret_"

    def where(self) -> Keys:
        return Keys(keys.deploy_secrets_key(self.workspace_id))
