"""What a workspace's plan limits are counted on: its members and live projects, each beside the
limit its tier sets on it (the active-run counter, with its own limit, is the runs' item:
`entities.runs.RunCounterItem`), and the counts that reckon them from scratch.

A stored limit is the tier's number, or NO_LIMIT for a tier without one; a limit never stored is
the default tier's, which the caller passes in (the catalog is logic, not an entity's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pynamodb.attributes import UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, number
from agentplane.entities.patterns import access_pattern
from agentplane.entities.projects import ProjectItem
from agentplane.entities.workspaces import MemberItem
from agentplane.store import QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.attributes import Attribute
    from pynamodb.expressions.condition import Condition

# A stored limit that says "as many as you like".
NO_LIMIT = -1


def stored_limit(allowed: int | None) -> int:
    """A tier's limit as it is kept beside its counter."""
    return NO_LIMIT if allowed is None else allowed


def room_for_one(count: Attribute[float], limit: Attribute[float], default: int | None) -> Condition:
    """One more fits under the limit kept beside `count`: none is set (NO_LIMIT), the count is below
    it, or, with no limit stored, below the default tier's `default` (None: no limit either). A
    count that is absent has no room: it must be reckoned first."""
    room: Condition = (limit == NO_LIMIT) | (count < limit)
    unset: Condition = limit.does_not_exist()
    room_by_default: Condition = unset if default is None else unset & (count < default)
    either: Condition = room | room_by_default
    return either


class PlanUsageItem(Entity, discriminator="plan_usage"):
    """A workspace's members and live projects, moved in the transaction of each addition or
    removal (an addition only with room under its limit); the limits are written when the
    workspace's tier changes. A workspace made before they were counted has no counts until
    they are reckoned (`count_members`, `count_live_projects`)."""

    workspace_id = UnicodeAttribute(null=True)
    members = number(null=True)
    member_limit = number(null=True)
    projects = number(null=True)
    project_limit = number(null=True)

    def where(self) -> Keys:
        assert self.workspace_id is not None
        return Keys(keys.plan_usage_key(self.workspace_id))

    @classmethod
    def counted(cls) -> Condition:
        """The counts have been reckoned (they are reckoned together)."""
        counted: Condition = cls.members.exists()
        return counted

    @classmethod
    def room_for_member(cls, default: int | None) -> Condition:
        return room_for_one(cls.members, cls.member_limit, default)

    @classmethod
    def room_for_project(cls, default: int | None) -> Condition:
        return room_for_one(cls.projects, cls.project_limit, default)


@access_pattern(MemberItem, partition=keys.ws_pk, sort="prefix MEMBER#, counted")
def count_members(ws_id: str) -> int:
    """How many members a workspace has, counted by DynamoDB (reckoning its member count)."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.MEMBER_PREFIX, consistent=True)
    return get_store().count(spec)


@access_pattern(ProjectItem, partition=keys.project_list_gsi, index=keys.GSI1, sort="counted")
def count_live_projects(ws_id: str) -> int:
    """How many live projects a workspace has, counted by DynamoDB (reckoning its project count;
    the index may lag a write by a moment)."""
    return get_store().count(QuerySpec(keys.project_list_gsi(ws_id), index=keys.GSI1))
