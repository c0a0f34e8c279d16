"""Teams and their members. A team's members sort right after the team's own item in the
workspace's partition, so one Query reads a team with its members; GSI1 lists a workspace's
teams alone, and (under another partition) the teams a member belongs to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pynamodb.attributes import UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.workspaces import Team, TeamMember
from agentplane.store import EntityPage, QuerySpec, get_store

# Teams read per round when every team of a workspace is wanted (export and import).
_ALL_TEAMS_ROUND = 100


class TeamItem(Entity[Team], discriminator="team"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    name_lower = UnicodeAttribute()  # what the name filter matches, in any case
    description = UnicodeAttribute(default="")
    member_count = number(default=0)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    internal = frozenset({"name_lower"})

    def where(self) -> Keys:
        return Keys(
            keys.team_key(self.workspace_id, self.id),
            gsi1=(keys.team_list_gsi(self.workspace_id), self.id),
        )

    derived = ("name_lower",)

    def derive(self) -> None:
        self.name_lower = self.name.lower()


class TeamMemberItem(Entity[TeamMember], discriminator="team_member"):
    workspace_id = UnicodeAttribute()
    team_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    role = UnicodeAttribute()
    added_by = UnicodeAttribute(null=True)
    added_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(
            keys.team_member_key(self.workspace_id, self.team_id, self.user_id),
            gsi1=(keys.teams_of_member_gsi(self.workspace_id, self.user_id), self.team_id),
        )


@access_pattern(TeamItem, partition=keys.ws_pk, sort="range TEAM#{team_id} … its members")
def team_with_members(
    ws_id: str, team_id: str, *, limit: int, start: dict[str, Any] | None = None
) -> tuple[TeamItem | None, list[TeamMemberItem], dict[str, Any] | None]:
    """A team followed by its members, in one strongly consistent Query (`start`: after that
    member). The team is None when unknown, or when `start` skips past it."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_between=keys.team_with_members(team_id), consistent=True)
    page = get_store().select(Entity, spec, limit=limit if start else limit + 1, start=start)
    team = next((item for item in page.items if isinstance(item, TeamItem)), None)
    members = [item for item in page.items if isinstance(item, TeamMemberItem)]
    return team, members, page.last_key


@access_pattern(TeamItem, partition=keys.team_list_gsi, index=keys.GSI1)
def teams_of_workspace(
    ws_id: str, *, name_contains: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[TeamItem]:
    """A workspace's teams in creation order; `name_contains` keeps those whose name contains it."""
    condition = TeamItem.name_lower.contains(name_contains.lower()) if name_contains else None
    spec = QuerySpec(keys.team_list_gsi(ws_id), index=keys.GSI1, filter=condition)
    return get_store().select(TeamItem, spec, limit=limit, start=start)


@access_pattern(TeamMemberItem, partition=keys.ws_pk, sort="prefix TEAM#{team_id}#MEMBER#")
def members_of_team(ws_id: str, team_id: str, *, limit: int) -> list[TeamMemberItem]:
    """The first `limit` members of a team, strongly consistent (deleting a team clears them)."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.team_member_prefix(team_id), consistent=True)
    return get_store().select(TeamMemberItem, spec, limit=limit).items


@access_pattern(TeamMemberItem, partition=keys.teams_of_member_gsi, index=keys.GSI1)
def teams_of_member(ws_id: str, user_id: str) -> list[str]:
    """The ids of every team a workspace member belongs to."""
    team_ids: list[str] = []
    start: dict[str, Any] | None = None
    spec = QuerySpec(keys.teams_of_member_gsi(ws_id, user_id), index=keys.GSI1)
    while True:
        page = get_store().select(TeamMemberItem, spec, limit=100, start=start)
        team_ids += [item.team_id for item in page.items]
        if page.last_key is None:
            return team_ids
        start = page.last_key


@access_pattern(TeamItem, partition=keys.ws_pk, sort="prefix TEAM#")
def all_teams(ws_id: str) -> Iterator[TeamItem]:
    """Every team of a workspace, strongly consistent (export and import), skipping their members."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.TEAM_PREFIX, consistent=True, filter=TeamItem.of_kind())
    start: dict[str, Any] | None = None
    while True:
        page = get_store().select(TeamItem, spec, limit=_ALL_TEAMS_ROUND, start=start)
        yield from page.items
        if page.last_key is None:
            return
        start = page.last_key


@access_pattern(TeamMemberItem, partition=keys.ws_pk, sort="prefix TEAM#{team_id}#MEMBER#, every page")
def every_member_of_team(ws_id: str, team_id: str) -> Iterator[TeamMemberItem]:
    """Every member of a team, strongly consistent, page by page (export and import)."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.team_member_prefix(team_id), consistent=True)
    start: dict[str, Any] | None = None
    while True:
        page = get_store().select(TeamMemberItem, spec, limit=_ALL_TEAMS_ROUND, start=start)
        yield from page.items
        if page.last_key is None:
            return
        start = page.last_key
