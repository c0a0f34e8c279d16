"""Teams inside a workspace (Orkosi's teams): CRUD and team members.

Team structure is workspace configuration: every role reads it (`settings:read`), admins and
owners change it (`settings:write`). A team member must be a member of the workspace; leaving
the workspace removes them from its teams. Each team counts its members (`member_count`) in the
same transactions that add or remove them.

A team's members sort right after the team's own item in the workspace's partition, so one Query
reads a team with its members; the team list comes from an index that holds the teams alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.teams import (
    TeamItem,
    TeamMemberItem,
    members_of_team,
    team_with_members,
    teams_of_workspace,
)
from agentplane.entities.teams import all_teams as _all_teams
from agentplane.entities.workspaces import MemberItem, WorkspaceItem
from agentplane.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.models.workspaces import Team, TeamCreate, TeamDetail, TeamMember, TeamMemberAdd, TeamUpdate
from agentplane.store import Transaction, TransactionFailed, get_store

_DETAIL_MEMBERS = 100
# Team members deleted per transaction when a team is deleted (guards, count and audit fill the rest).
_DELETE_BATCH = 90


def team_item(ws_id: str, team_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A team as the table holds it (import writes teams it restores)."""
    team = TeamItem(workspace_id=ws_id, id=team_id, **fields)
    team.stamp()
    return team.as_item()


def team_member_item(ws_id: str, team_id: str, user_id: str, role: str, added_by: str, at: str) -> dict[str, Any]:
    member = TeamMemberItem(
        workspace_id=ws_id, team_id=team_id, user_id=user_id, role=role, added_by=added_by, added_at=at
    )
    member.stamp()
    return member.as_item()


def load_team(ws_id: str, team_id: str) -> TeamItem:
    return get_store().read_or_404(TeamItem, keys.team_key(ws_id, team_id), f"team {team_id} not found")


def all_teams(ws_id: str) -> Iterator[dict[str, Any]]:
    """Every team of a workspace as the table holds it (export and import)."""
    for team in _all_teams(ws_id):
        yield team.as_item()


def create_team(access: Access, body: TeamCreate) -> Team:
    ws = access.workspace_id
    at = iso()
    team = TeamItem(
        workspace_id=ws,
        id=new_id("team"),
        **body.model_dump(),
        member_count=0,
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    tx = access.transaction()
    tx.create(team)
    if access.principal.kind != "agent_key":  # an agent key's guard already checks the workspace
        # A workspace being deleted loses its members last: it is checked here, not read first.
        tx.require(WorkspaceItem, keys.workspace_key(ws), WorkspaceItem.live(), name="workspace")
    access.audit(tx, "team.created", "team", team.id, {"name": body.name})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == "workspace":
            raise NotFound("workspace not found") from failure
        raise
    return team.to_model()


def list_teams(access: Access, name: str | None, limit: int, cursor: str | None) -> tuple[list[Team], str | None]:
    """Teams in creation order; `name` keeps those whose name contains it (any case)."""
    ws = access.workspace_id
    scope, query = f"teams:{ws}", {"name": name}
    page = teams_of_workspace(ws, name_contains=name, limit=limit, start=decode_cursor(cursor, scope, query))
    return [team.to_model() for team in page.items], encode_cursor(page.last_key, scope, query)


def get_team(access: Access, team_id: str) -> TeamDetail:
    team, members, last_key = team_with_members(access.workspace_id, team_id, limit=_DETAIL_MEMBERS)
    if team is None:
        raise NotFound(f"team {team_id} not found")
    return TeamDetail.model_validate(
        {
            **team.to_model().model_dump(),
            "members": [member.to_model() for member in members],
            "more_members": last_key is not None,
        }
    )


def update_team(access: Access, team_id: str, body: TeamUpdate, if_match: int | None = None) -> Team:
    team = load_team(access.workspace_id, team_id)
    expected = body.version or if_match
    if expected is not None and expected != team.version:
        raise PreconditionFailed(
            f"team {team_id} is at version {team.version}, not {expected}", current_version=team.version
        )
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"version"})
    if not changes:
        return team.to_model()
    fields = sorted(changes)
    tx = access.transaction()
    tx.change(team, team.assign(**changes, updated_at=iso()))
    access.audit(tx, "team.updated", "team", team_id, {"fields": fields})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"team {team_id} changed while it was being updated; reload and retry") from failure
    return team.to_model()


def delete_team(access: Access, team_id: str) -> None:
    """Delete a team and its memberships. Teams with more than ~90 members lose them over several
    transactions (each audited, each lowering `member_count`); the team itself goes last, only
    once it has no members left, so a retry after a failure finishes the job."""
    ws = access.workspace_id
    team = load_team(ws, team_id)
    for _attempt in range(3):
        while members := members_of_team(ws, team_id, limit=_DELETE_BATCH):
            tx = access.transaction()
            for member in members:
                tx.drop(TeamMemberItem, member.key)
            tx.adjust(TeamItem, team.key, [TeamItem.member_count.add(-len(members))])
            access.audit(
                tx,
                "team.members_removed",
                "team",
                team_id,
                {"user_ids": [m.user_id for m in members], "reason": "team deleted"},
            )
            try:
                access.commit(tx)
            except TransactionFailed as failure:
                raise Conflict(f"team {team_id} changed while it was being deleted; try again") from failure
        tx = access.transaction()
        no_members = TeamItem.member_count.does_not_exist() | (TeamItem.member_count <= 0)
        tx.drop(TeamItem, team.key, no_members)
        access.audit(tx, "team.deleted", "team", team_id, {"name": team.name})
        try:
            access.commit(tx)
            return
        except TransactionFailed:
            load_team(ws, team_id)  # 404 if a concurrent delete won
            continue  # someone joined meanwhile: clear again
    raise Conflict(f"team {team_id} keeps gaining members; try again")


def list_team_members(
    access: Access, team_id: str, limit: int, cursor: str | None
) -> tuple[list[TeamMember], str | None]:
    ws = access.workspace_id
    scope = f"team-members:{ws}:{team_id}"
    start = decode_cursor(cursor, scope, {})
    team, members, last_key = team_with_members(ws, team_id, limit=limit, start=start)
    if start is None and team is None:
        raise NotFound(f"team {team_id} not found")
    if start is not None and not members:
        load_team(ws, team_id)  # later pages skip the team's item: an empty one is a 404 if it is gone
    return [member.to_model() for member in members], encode_cursor(last_key, scope, {})


def _not_a_member(user_id: str) -> Unprocessable:
    return Unprocessable(
        f"{user_id} is not a member of this workspace",
        errors=[{"field": "user_id", "message": "must be a member of the workspace"}],
    )


def add_team_member(access: Access, team_id: str, body: TeamMemberAdd) -> TeamMember:
    ws = access.workspace_id
    team = load_team(ws, team_id)
    if get_store().read(MemberItem, keys.member_key(ws, body.user_id)) is None:
        raise _not_a_member(body.user_id)
    member = TeamMemberItem(
        workspace_id=ws,
        team_id=team_id,
        user_id=body.user_id,
        role=body.role.value,
        added_by=access.actor_id,
        added_at=iso(),
    )
    tx = access.transaction()
    if body.user_id != access.principal.user_id:
        # The caller's own membership is already guarded by the transaction (one operation per item).
        tx.require(MemberItem, keys.member_key(ws, body.user_id), MemberItem.present(), name="membership")
    tx.create(member, name="team_member")
    tx.adjust(TeamItem, team.key, [TeamItem.member_count.add(1)])
    access.audit(tx, "team.member_added", "team", team_id, {"user_id": body.user_id, "role": body.role.value})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == "membership":
            raise _not_a_member(body.user_id) from failure
        if failure.failed == "team_member":
            raise Conflict(f"{body.user_id} is already in team {team_id}") from failure
        raise NotFound(f"team {team_id} not found") from failure
    return member.to_model()


def remove_team_member(access: Access, team_id: str, user_id: str) -> None:
    ws = access.workspace_id
    load_team(ws, team_id)
    tx = access.transaction()
    drop_team_membership(tx, ws, team_id, user_id, name="team_member")
    access.audit(tx, "team.member_removed", "team", team_id, {"user_id": user_id})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == "team_member":
            raise NotFound(f"{user_id} is not in team {team_id}") from failure
        raise NotFound(f"team {team_id} not found") from failure


def drop_team_membership(tx: Transaction, ws_id: str, team_id: str, user_id: str, name: str | None = None) -> None:
    """Take `user_id` out of a team, lowering its count, in `tx` (removing a workspace member
    takes them out of every team); `name` names the membership's deletion."""
    tx.drop(TeamMemberItem, keys.team_member_key(ws_id, team_id, user_id), name=name)
    tx.adjust(TeamItem, keys.team_key(ws_id, team_id), [TeamItem.member_count.add(-1)])
