"""Audit events: a workspace's trail of what happens in it, and a person's own trail of changes to
their account (which belongs to no workspace). Both are one kind of item; where it lives follows
from whose trail it is on."""

from __future__ import annotations

from pynamodb.attributes import UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, MapDocument
from agentplane.models.audit import AuditEvent


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
