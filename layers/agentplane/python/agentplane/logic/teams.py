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

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic.workspaces import not_deleted
from agentplane.models.workspaces import Team, TeamCreate, TeamDetail, TeamMember, TeamMemberAdd, TeamUpdate
from agentplane.store import Expr, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

_DETAIL_MEMBERS = 100
# Team members deleted per transaction when a team is deleted (guards, count and audit fill the rest).
_DELETE_BATCH = 90


def team_item(ws_id: str, team_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        **keys.team_key(ws_id, team_id),
        keys.ENTITY: "team",
        keys.GSI1PK: keys.team_list_gsi(ws_id),
        keys.GSI1SK: team_id,
        **fields,
        "id": team_id,
        "workspace_id": ws_id,
        "name_lower": str(fields["name"]).lower(),
    }


def team_member_item(ws_id: str, team_id: str, user_id: str, role: str, added_by: str, at: str) -> dict[str, Any]:
    return {
        **keys.team_member_key(ws_id, team_id, user_id),
        keys.ENTITY: "team_member",
        keys.GSI1PK: keys.teams_of_member_gsi(ws_id, user_id),
        keys.GSI1SK: team_id,
        "workspace_id": ws_id,
        "team_id": team_id,
        "user_id": user_id,
        "role": role,
        "added_by": added_by,
        "added_at": at,
    }


def load_team(ws_id: str, team_id: str) -> dict[str, Any]:
    item = get_store().get(keys.team_key(ws_id, team_id))
    if item is None:
        raise NotFound(f"team {team_id} not found")
    return item


def _team_and_members(
    ws_id: str, team_id: str, limit: int, start: dict[str, Any] | None = None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any] | None]:
    """One Query over the team's item and the members after it (`start`: after that member).
    The team is None when unknown, or when `start` skips it (members exist only while it does)."""
    page = get_store().query(
        keys.ws_pk(ws_id),
        sk_between=keys.team_with_members(team_id),
        limit=limit if start else limit + 1,
        start_key=start,
        consistent=True,
    )
    items = page.items
    team = None
    if items and items[0][keys.SK] == keys.team_key(ws_id, team_id)["SK"]:
        team, items = items[0], items[1:]
    return team, items, page.last_key


def all_teams(ws_id: str) -> Iterator[dict[str, Any]]:
    """Every team of a workspace, strongly consistent (export and import), skipping their members."""
    start: dict[str, Any] | None = None
    while True:
        page = get_store().query(
            keys.ws_pk(ws_id),
            sk_prefix=keys.TEAM_PREFIX,
            limit=100,
            start_key=start,
            consistent=True,
            filter=attr_eq(keys.ENTITY, "team"),
        )
        yield from page.items
        if page.last_key is None:
            return
        start = page.last_key


def create_team(access: Access, body: TeamCreate, request_id: str = "") -> Team:
    ws = access.workspace_id
    team_id = new_id("team")
    at = iso()
    item = team_item(
        ws,
        team_id,
        {
            **body.model_dump(),
            "member_count": 0,
            "created_by": access.actor_id,
            "created_at": at,
            "updated_at": at,
            "version": 1,
        },
    )
    tx = access.transaction()
    tx.put(item, not_exists())
    workspace_index = None
    if access.principal.kind != "agent_key":  # an agent key's guard already checks the workspace
        # A workspace being deleted loses its members last: it is checked here, not read first.
        workspace_index = len(tx.operations)
        tx.check(keys.workspace_key(ws), exists() & not_deleted())
    audit.record(tx, ws, access.actor_id, "team.created", "team", team_id, request_id, {"name": body.name})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if workspace_index is not None and failure.failed_index() == workspace_index:
            raise NotFound("workspace not found") from failure
        raise
    return Team.model_validate(item)


def list_teams(access: Access, name: str | None, limit: int, cursor: str | None) -> tuple[list[Team], str | None]:
    """Teams in creation order; `name` keeps those whose name contains it (any case)."""
    ws = access.workspace_id
    scope, query = f"teams:{ws}", {"name": name}
    condition = None
    if name:
        condition = Expr("contains(#nl, :nl)", {"#nl": "name_lower"}, {":nl": name.lower()})
    page = get_store().query(
        keys.team_list_gsi(ws),
        index=keys.GSI1,
        limit=limit,
        start_key=decode_cursor(cursor, scope, query),
        filter=condition,
    )
    return [Team.model_validate(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def get_team(access: Access, team_id: str) -> TeamDetail:
    ws = access.workspace_id
    item, members, last_key = _team_and_members(ws, team_id, _DETAIL_MEMBERS)
    if item is None:
        raise NotFound(f"team {team_id} not found")
    return TeamDetail.model_validate(
        {
            **item,
            "members": [TeamMember.model_validate(m) for m in members],
            "more_members": last_key is not None,
        }
    )


def update_team(
    access: Access, team_id: str, body: TeamUpdate, if_match: int | None = None, request_id: str = ""
) -> Team:
    ws = access.workspace_id
    current = load_team(ws, team_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"team {team_id} is at version {current['version']}, not {expected}", current_version=current["version"]
        )
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"version"})
    if not changes:
        return Team.model_validate(current)
    fields = sorted(changes)
    if "name" in changes:
        changes["name_lower"] = changes["name"].lower()
    changes["updated_at"] = iso()
    changes["version"] = current["version"] + 1
    tx = access.transaction()
    tx.update(keys.team_key(ws, team_id), Update(set=changes), exists() & attr_eq("version", current["version"]))
    audit.record(tx, ws, access.actor_id, "team.updated", "team", team_id, request_id, {"fields": fields})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"team {team_id} changed while it was being updated; reload and retry") from failure
    return Team.model_validate({**current, **changes})


def delete_team(access: Access, team_id: str, request_id: str = "") -> None:
    """Delete a team and its memberships. Teams with more than ~90 members lose them over several
    transactions (each audited, each lowering `member_count`); the team itself goes last, only
    once it has no members left, so a retry after a failure finishes the job."""
    ws = access.workspace_id
    team = load_team(ws, team_id)
    for _attempt in range(3):
        while True:
            page = get_store().query(
                keys.ws_pk(ws), sk_prefix=keys.team_member_prefix(team_id), limit=_DELETE_BATCH, consistent=True
            )
            if not page.items:
                break
            tx = access.transaction()
            for member in page.items:
                tx.delete(keys.team_member_key(ws, team_id, member["user_id"]), exists())
            tx.update(keys.team_key(ws, team_id), Update(add={"member_count": -len(page.items)}), exists())
            audit.record(
                tx,
                ws,
                access.actor_id,
                "team.members_removed",
                "team",
                team_id,
                request_id,
                {"user_ids": [m["user_id"] for m in page.items], "reason": "team deleted"},
            )
            try:
                access.commit(tx)
            except TransactionFailed as failure:
                raise Conflict(f"team {team_id} changed while it was being deleted; try again") from failure
        tx = access.transaction()
        tx.delete(
            keys.team_key(ws, team_id),
            exists() & Expr("attribute_not_exists(#mc) OR #mc <= :zero", {"#mc": "member_count"}, {":zero": 0}),
        )
        audit.record(tx, ws, access.actor_id, "team.deleted", "team", team_id, request_id, {"name": team["name"]})
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
    team, members, last_key = _team_and_members(ws, team_id, limit, start)
    if start is None and team is None:
        raise NotFound(f"team {team_id} not found")
    if start is not None and not members:
        load_team(ws, team_id)  # later pages skip the team's item: an empty one is a 404 if it is gone
    return [TeamMember.model_validate(m) for m in members], encode_cursor(last_key, scope, {})


def _not_a_member(user_id: str) -> Unprocessable:
    return Unprocessable(
        f"{user_id} is not a member of this workspace",
        errors=[{"field": "user_id", "message": "must be a member of the workspace"}],
    )


def add_team_member(access: Access, team_id: str, body: TeamMemberAdd, request_id: str = "") -> TeamMember:
    ws = access.workspace_id
    load_team(ws, team_id)
    if get_store().get(keys.member_key(ws, body.user_id)) is None:
        raise _not_a_member(body.user_id)
    item = team_member_item(ws, team_id, body.user_id, body.role.value, access.actor_id, iso())
    tx = access.transaction()
    membership_index = None
    if body.user_id != access.principal.user_id:
        # The caller's own membership is already guarded by the transaction (one operation per item).
        membership_index = len(tx.operations)
        tx.check(keys.member_key(ws, body.user_id), exists())
    member_index = len(tx.operations)
    tx.put(item, not_exists())
    tx.update(keys.team_key(ws, team_id), Update(add={"member_count": 1}), exists())
    audit.record(
        tx,
        ws,
        access.actor_id,
        "team.member_added",
        "team",
        team_id,
        request_id,
        {"user_id": body.user_id, "role": body.role.value},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        index = failure.failed_index()
        if index == membership_index:
            raise _not_a_member(body.user_id) from failure
        if index == member_index:
            raise Conflict(f"{body.user_id} is already in team {team_id}") from failure
        raise NotFound(f"team {team_id} not found") from failure
    return TeamMember.model_validate(item)


def remove_team_member(access: Access, team_id: str, user_id: str, request_id: str = "") -> None:
    ws = access.workspace_id
    load_team(ws, team_id)
    tx = access.transaction()
    member_index = len(tx.operations)
    tx.delete(keys.team_member_key(ws, team_id, user_id), exists())
    tx.update(keys.team_key(ws, team_id), Update(add={"member_count": -1}), exists())
    audit.record(tx, ws, access.actor_id, "team.member_removed", "team", team_id, request_id, {"user_id": user_id})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed_index() == member_index:
            raise NotFound(f"{user_id} is not in team {team_id}") from failure
        raise NotFound(f"team {team_id} not found") from failure
