"""Workspaces and what they hold for their people: the workspace item, its memberships (one per
person, also listed under the person by GSI1), its pending invites (GSI1 while pending) with the
guard that keeps one live invite per email, its common environment and its task templates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, Keys, ListDocument, MapDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.workspaces import Invite, InviteStatus, Membership, Workspace
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition

# Items read per round when every one of a collection is wanted.
_ALL_ROUND = 100


class WorkspaceItem(Entity[Workspace], discriminator="workspace"):
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    language = UnicodeAttribute(default="en")
    workflow = UnicodeAttribute(default="scrum")
    spec = UnicodeAttribute(default="")
    auto_push = BooleanAttribute(default=False)
    owner_id = UnicodeAttribute()
    owner_count = number(default=1)  # every change that takes an owner away keeps it above zero
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()
    deleted_at = UnicodeAttribute(null=True)  # soft deleted: kept for its audit trail
    deleted_by = UnicodeAttribute(null=True)
    deleted_reason = UnicodeAttribute(null=True)
    settings = MapDocument(null=True)  # workspaces made before `auto_push` had its own attribute

    internal = frozenset({"owner_count", "deleted_at", "deleted_by", "deleted_reason", "settings"})

    def where(self) -> Keys:
        return Keys(keys.workspace_key(self.id))

    @classmethod
    def live(cls) -> Condition:
        """The workspace exists and is not deleted."""
        live: Condition = cls.PK.exists() & cls.deleted_at.does_not_exist()
        return live

    @classmethod
    def owner_count_change(cls, delta: int) -> tuple[list[Any], Condition]:
        """The update and condition adding `delta` owners: a decrement never takes it below one."""
        condition = cls.live()
        if delta < 0:
            condition = condition & (cls.owner_count > 1)
        return [cls.owner_count.add(delta)], condition


class MemberItem(Entity, discriminator="member"):
    workspace_id = UnicodeAttribute()
    workspace_name = UnicodeAttribute()  # what the person's workspace list shows
    user_id = UnicodeAttribute()
    role = UnicodeAttribute()
    joined_at = UnicodeAttribute()
    added_by = UnicodeAttribute(null=True)
    role_changed_at = UnicodeAttribute(null=True)

    def where(self) -> Keys:
        return Keys(
            keys.member_key(self.workspace_id, self.user_id),
            gsi1=(keys.member_of_user_gsi(self.user_id), keys.member_of_user_sort_key(self.workspace_id)),
        )

    @classmethod
    def with_role(cls, *roles: str) -> Condition:
        """The membership still holds one of `roles`."""
        return cls.role.is_in(*roles)

    def to_membership(self) -> Membership:
        return Membership.model_validate(self.fields())


class CommonEnvItem(Entity, discriminator="common_env"):
    """The variables every agent run of the workspace receives: their values sealed in one blob
    bound to the workspace, their names with who set them when in plain `variables`."""

    workspace_id = UnicodeAttribute()
    sealed = MapDocument()
    variables = MapDocument(default=dict)  # name -> {updated_at, updated_by}
    version = VersionAttribute()
    updated_at = UnicodeAttribute()
    updated_by = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.common_env_key(self.workspace_id))


class InviteItem(Entity[Invite], discriminator="invite"):
    id = UnicodeAttribute()
    workspace_id = UnicodeAttribute()
    email = UnicodeAttribute()
    role = UnicodeAttribute()
    status = UnicodeAttribute()
    expires_at = UnicodeAttribute()
    expires_epoch = number()
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    token_hash = UnicodeAttribute()  # the secret's record, never the secret
    accepted_by = UnicodeAttribute(null=True)
    accepted_at = UnicodeAttribute(null=True)
    revoked_at = UnicodeAttribute(null=True)
    revoked_by = UnicodeAttribute(null=True)
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    internal = frozenset({"token_hash", "expires_epoch", "revoked_by"})

    def where(self) -> Keys:
        # Listed as pending until it is accepted or revoked.
        pending = self.status == InviteStatus.pending.value
        return Keys(
            keys.invite_key(self.workspace_id, self.id),
            gsi1=(keys.invite_pending_gsi(self.workspace_id), self.id) if pending else None,
        )

    @classmethod
    def pending(cls) -> Condition:
        return cls.status == InviteStatus.pending.value


class InviteEmailItem(Entity, discriminator="invite_email"):
    """Holds an email for the one live invite it may have in a workspace."""

    workspace_id = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    invite_id = UnicodeAttribute()
    expires_epoch = number()
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    def where(self) -> Keys:
        assert self.workspace_id is not None and self.email is not None
        return Keys(keys.invite_email_key(self.workspace_id, self.email))

    @classmethod
    def free(cls, at: int) -> Condition:
        """No live invite holds the email: no guard, or the guard's invite has expired."""
        free: Condition = cls.PK.does_not_exist() | (cls.expires_epoch <= at)
        return free


class TaskTemplateItem(Entity, discriminator="task_template"):
    """A task to create again (Toban's task templates), kept by export and import; its id follows
    from its title."""

    id = UnicodeAttribute()
    workspace_id = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    priority = UnicodeAttribute(null=True)
    owner = UnicodeAttribute(null=True)
    labels = ListDocument(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.task_template_key(self.workspace_id, self.id))


def _every(spec: QuerySpec, entity: type[Any]) -> Iterator[Any]:
    start: dict[str, Any] | None = None
    while True:
        page = get_store().select(entity, spec, limit=_ALL_ROUND, start=start)
        yield from page.items
        if page.last_key is None:
            return
        start = page.last_key


@access_pattern(MemberItem, partition=keys.ws_pk, sort="prefix MEMBER#")
def members_page(ws_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[MemberItem]:
    """A page of a workspace's members, by user id."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.MEMBER_PREFIX)
    return get_store().select(MemberItem, spec, limit=limit, start=start)


@access_pattern(MemberItem, partition=keys.ws_pk, sort="prefix MEMBER#, strongly consistent")
def first_members(ws_id: str, *, limit: int) -> list[MemberItem]:
    """The first `limit` members of a workspace as they are now (clearing it, or telling whether
    someone else is left in it)."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.MEMBER_PREFIX, consistent=True)
    return get_store().select(MemberItem, spec, limit=limit).items


@access_pattern(MemberItem, partition=keys.ws_pk, sort="prefix MEMBER#, every page")
def every_member(ws_id: str) -> Iterator[MemberItem]:
    """Every member of a workspace, strongly consistent, page by page (export, rename, delete)."""
    return _every(QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.MEMBER_PREFIX, consistent=True), MemberItem)


@access_pattern(MemberItem, partition=keys.member_of_user_gsi, index=keys.GSI1)
def memberships_of(user_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[MemberItem]:
    """A page of the workspaces a person belongs to (their memberships, by workspace)."""
    spec = QuerySpec(keys.member_of_user_gsi(user_id), index=keys.GSI1)
    return get_store().select(MemberItem, spec, limit=limit, start=start)


@access_pattern(MemberItem, partition=keys.member_of_user_gsi, index=keys.GSI1, sort="every page")
def every_membership_of(user_id: str) -> Iterator[MemberItem]:
    """Every membership of a person (erasing their account), page by page."""
    return _every(QuerySpec(keys.member_of_user_gsi(user_id), index=keys.GSI1), MemberItem)


@access_pattern(InviteItem, partition=keys.invite_pending_gsi, index=keys.GSI1)
def pending_invites(ws_id: str, *, now: int, limit: int, start: dict[str, Any] | None) -> EntityPage[InviteItem]:
    """A page of a workspace's pending invites that have not expired by `now`, oldest first (one
    Query: a page may come back short of expired ones)."""
    spec = QuerySpec(keys.invite_pending_gsi(ws_id), index=keys.GSI1, filter=InviteItem.expires_epoch > now)
    return get_store().select(InviteItem, spec, limit=limit, start=start)


@access_pattern(TaskTemplateItem, partition=keys.ws_pk, sort="prefix TASKTEMPLATE#")
def every_task_template(ws_id: str) -> Iterator[TaskTemplateItem]:
    """Every task template of a workspace, strongly consistent (export and import)."""
    return _every(QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.TASK_TEMPLATE_PREFIX, consistent=True), TaskTemplateItem)
