"""Search postings: one item per token per indexed item, `PK = WS#<ws>#SEARCH#<token>`,
`SK = <kind>#<id>`, carrying what a hit shows (see logic.search)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pynamodb.attributes import UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, MapDocument
from agentplane.entities.patterns import access_pattern
from agentplane.store import EntityPage, QuerySpec, get_store


class SearchPostingItem(Entity, discriminator="search_posting"):
    workspace_id = UnicodeAttribute()
    token = UnicodeAttribute()
    type = UnicodeAttribute()  # the hit's kind: task, message, thread, agent, project or run
    id = UnicodeAttribute()
    title = UnicodeAttribute()
    context = MapDocument(default=dict)

    def where(self) -> Keys:
        return Keys(keys.search_posting_key(self.workspace_id, self.token, self.type, self.id))

    def hit(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "title": self.title, "context": self.context}

    def __eq__(self, other: object) -> bool:
        """Two postings are the same when they would store the same item (an index change is
        compared by what it writes)."""
        if not isinstance(other, SearchPostingItem):
            return NotImplemented
        return self.as_item() == other.as_item()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


@access_pattern(SearchPostingItem, partition=keys.search_token_pk, sort="prefix {kind}#, newest first")
def postings_of_token(
    ws_id: str, token: str, kind: str, *, limit: int, start: dict[str, Any] | None
) -> EntityPage[SearchPostingItem]:
    """The items of one kind a token finds, newest first (ids sort by time)."""
    spec = QuerySpec(keys.search_token_pk(ws_id, token), sk_prefix=keys.search_entity_prefix(kind), newest_first=True)
    return get_store().select(SearchPostingItem, spec, limit=limit, start=start)


def postings_present(wanted: Sequence[keys.Key]) -> list[bool]:
    """Whether a posting exists at each key, in BatchGetItems of at most 100 keys."""
    return [posting is not None for posting in get_store().read_many(SearchPostingItem, wanted)]
