"""Audit events: a workspace's trail of what happens in it, and a person's own trail of changes to
their account (which belongs to no workspace). Both are one kind of item; where it lives follows
from whose trail it is on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, MapDocument
from agentplane.entities.patterns import access_pattern
from agentplane.models.audit import AuditEvent
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition

# Queries one filtered page of the trail may take to fill up before it answers with a cursor.
_FILL_ROUNDS = 10


class AuditItem(Entity[AuditEvent], discriminator="audit"):
    id = UnicodeAttribute()
    workspace_id = UnicodeAttribute(null=True)  # None: on a person's own trail (`user_id`)
    user_id = UnicodeAttribute(null=True)  # whose account trail it is on
    actor_id = UnicodeAttribute()
    action = UnicodeAttribute()
    target_type = UnicodeAttribute()
    target_id = UnicodeAttribute()
    request_id = UnicodeAttribute(default="")
    details = MapDocument(default=dict)
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        if self.workspace_id:
            return Keys(keys.audit_key(self.workspace_id, self.id))
        assert self.user_id is not None, "an audit event belongs to a workspace or to a person"
        return Keys(keys.account_audit_key(self.user_id, self.id))


@access_pattern(AuditItem, partition=keys.audit_pk, sort="range of event ids, newest first")
def audit_trail(
    ws_id: str,
    *,
    equal: Mapping[str, str],
    window: tuple[str, str] | None,
    limit: int,
    start: dict[str, Any] | None,
) -> EntityPage[AuditItem]:
    """A page of a workspace's audit events, newest first, within `window` (a range of their
    time-ordered ids) and with the attributes `equal` names holding those values. A filtered Query
    can come back short, so it reads on, each Query asking only for what is still missing, until
    the page is full, the trail ends or _FILL_ROUNDS Queries were made (the cursor resumes)."""
    condition: Condition | None = None
    attributes = AuditItem.get_attributes()
    for name, value in equal.items():
        test = attributes[name] == value
        condition = test if condition is None else condition & test
    spec = QuerySpec(keys.audit_pk(ws_id), sk_between=window, filter=condition, newest_first=True)
    items: list[AuditItem] = []
    last = start
    for _ in range(_FILL_ROUNDS):
        page = get_store().select(AuditItem, spec, limit=limit - len(items), start=last)
        items += page.items
        last = page.last_key
        if last is None or len(items) >= limit:
            break
    return EntityPage(items, last)
