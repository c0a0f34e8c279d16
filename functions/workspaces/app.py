"""Workspaces family: workspaces, members, invites, teams, export/import and common env.

Scopes: reading the workspace, its members, invites and teams needs `settings:read` (every role);
changing them needs `settings:write` (admin and owner); deleting the workspace is for owners only.
Common env values need `secrets:write` to change and `secrets:read` to reveal.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import Access
from agentplane.http import (
    CREATED,
    DELETED,
    PROBLEM_RESPONSES,
    IfMatch,
    create_app,
    created,
    lambda_entry,
    limit_group,
    no_content,
    ok,
    page,
    request_id,
    request_principal,
    workspace_scope,
)
from agentplane.logic import invites, members, teams, workspaces
from agentplane.models.common import ListQuery
from agentplane.models.envelope import Data, DataList
from agentplane.models.transfer import ImportResult, WorkspaceDocument, WorkspaceExport
from agentplane.models.workspaces import (
    CommonEnv,
    CommonEnvPut,
    Invite,
    InviteCreate,
    InviteCreated,
    Member,
    MemberAdd,
    Membership,
    MemberUpdate,
    Team,
    TeamCreate,
    TeamDetail,
    TeamMember,
    TeamMemberAdd,
    TeamQuery,
    TeamUpdate,
    Workspace,
    WorkspaceCreate,
    WorkspaceUpdate,
)

# The common env is sealed with the workspace secrets key.
REQUIRED_SETTINGS = ("kms_key_id",)
app = create_app(requires=REQUIRED_SETTINGS)
WS = "/api/v1/workspaces/<ws>"
# Settings writes share a tighter per-user limit (20/min by default).
settings_limit = [limit_group("settings-write")]
AnyMember = Annotated[Access, workspace_scope()]
ReadSettings = Annotated[Access, workspace_scope("settings:read")]
WriteSettings = Annotated[Access, workspace_scope("settings:write")]
WriteSecrets = Annotated[Access, workspace_scope("secrets:write")]


# --- workspaces ----------------------------------------------------------------------------------


@app.post("/api/v1/workspaces", responses=CREATED)
def create_workspace(body: WorkspaceCreate) -> Response[Data[Workspace]]:
    return created(workspaces.create_workspace(request_principal(app), body, request_id(app)))


@app.get("/api/v1/workspaces", responses=PROBLEM_RESPONSES)
def list_workspaces(query: Annotated[ListQuery, Query()]) -> DataList[Membership]:
    items, next_cursor = workspaces.list_workspaces(request_principal(app), query.limit, query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(WS, responses=PROBLEM_RESPONSES)
def get_workspace(ws: str, access: AnyMember) -> Data[Workspace]:
    return ok(workspaces.get_workspace(access))


@app.patch(WS, middlewares=settings_limit, responses=PROBLEM_RESPONSES)
def update_workspace(
    ws: str, access: WriteSettings, body: WorkspaceUpdate, if_match: IfMatch = None
) -> Data[Workspace]:
    return ok(workspaces.update_workspace(access, body, if_match))


@app.delete(WS, responses=DELETED)
def delete_workspace(ws: str, access: WriteSettings) -> Response[Any]:
    workspaces.delete_workspace(access)
    return no_content()


# --- members -------------------------------------------------------------------------------------


@app.get(f"{WS}/members", responses=PROBLEM_RESPONSES)
def list_members(ws: str, access: ReadSettings, query: Annotated[ListQuery, Query()]) -> DataList[Member]:
    items, next_cursor = members.list_members(access, query.limit, query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{WS}/members", responses=CREATED)
def add_member(ws: str, access: WriteSettings, body: MemberAdd) -> Response[Data[Member]]:
    return created(members.add_member(access, body))


@app.patch(f"{WS}/members/<user_id>", responses=PROBLEM_RESPONSES)
def update_member(ws: str, user_id: str, access: WriteSettings, body: MemberUpdate) -> Data[Member]:
    return ok(members.update_member(access, user_id, body))


@app.delete(f"{WS}/members/<user_id>", responses=DELETED)
def remove_member(ws: str, user_id: str, access: AnyMember) -> Response[Any]:
    # Any member may remove themselves (leave); removing someone else needs settings:write.
    members.remove_member(access, user_id)
    return no_content()


# --- invites -------------------------------------------------------------------------------------


@app.get(f"{WS}/invites", responses=PROBLEM_RESPONSES)
def list_invites(ws: str, access: ReadSettings, query: Annotated[ListQuery, Query()]) -> DataList[Invite]:
    items, next_cursor = invites.list_invites(access, query.limit, query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{WS}/invites", responses=CREATED)
def create_invite(ws: str, access: WriteSettings, body: InviteCreate) -> Response[Data[InviteCreated]]:
    return created(invites.create_invite(access, body))


@app.delete(f"{WS}/invites/<invite_id>", responses=DELETED)
def revoke_invite(ws: str, invite_id: str, access: WriteSettings) -> Response[Any]:
    invites.revoke_invite(access, invite_id)
    return no_content()


@app.post("/api/v1/invites/<token>/accept", responses=PROBLEM_RESPONSES)
def accept_invite(token: str) -> Data[Membership]:
    return ok(invites.accept_invite(request_principal(app), token, request_id(app)))


# --- teams ---------------------------------------------------------------------------------------
@app.get(f"{WS}/teams", responses=PROBLEM_RESPONSES)
def list_teams(ws: str, access: ReadSettings, query: Annotated[TeamQuery, Query()]) -> DataList[Team]:
    items, next_cursor = teams.list_teams(access, query.name, query.limit, query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{WS}/teams", responses=CREATED)
def create_team(ws: str, access: WriteSettings, body: TeamCreate) -> Response[Data[Team]]:
    return created(teams.create_team(access, body))


@app.get(f"{WS}/teams/<team_id>", responses=PROBLEM_RESPONSES)
def get_team(ws: str, team_id: str, access: ReadSettings) -> Data[TeamDetail]:
    return ok(teams.get_team(access, team_id))


@app.patch(f"{WS}/teams/<team_id>", responses=PROBLEM_RESPONSES)
def update_team(ws: str, team_id: str, access: WriteSettings, body: TeamUpdate, if_match: IfMatch = None) -> Data[Team]:
    return ok(teams.update_team(access, team_id, body, if_match))


@app.delete(f"{WS}/teams/<team_id>", responses=DELETED)
def delete_team(ws: str, team_id: str, access: WriteSettings) -> Response[Any]:
    teams.delete_team(access, team_id)
    return no_content()


@app.get(f"{WS}/teams/<team_id>/members", responses=PROBLEM_RESPONSES)
def list_team_members(
    ws: str, team_id: str, access: ReadSettings, query: Annotated[ListQuery, Query()]
) -> DataList[TeamMember]:
    items, next_cursor = teams.list_team_members(access, team_id, query.limit, query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{WS}/teams/<team_id>/members", responses=CREATED)
def add_team_member(ws: str, team_id: str, access: WriteSettings, body: TeamMemberAdd) -> Response[Data[TeamMember]]:
    return created(teams.add_team_member(access, team_id, body))


@app.delete(f"{WS}/teams/<team_id>/members/<user_id>", responses=DELETED)
def remove_team_member(ws: str, team_id: str, user_id: str, access: WriteSettings) -> Response[Any]:
    teams.remove_team_member(access, team_id, user_id)
    return no_content()


# --- export / import -----------------------------------------------------------------------------
# Export and import read and write every family's items, so they import every family's logic: that is
# loaded when one of them is asked for, not on every cold start of this function.


@app.get(f"{WS}/export", responses=PROBLEM_RESPONSES)
def export_workspace(ws: str, access: ReadSettings) -> Data[WorkspaceExport]:
    from agentplane.logic import transfer

    return ok(transfer.export_workspace(access))


@app.post(f"{WS}/import", responses=PROBLEM_RESPONSES)
def import_workspace(ws: str, access: WriteSettings, body: WorkspaceDocument) -> Data[ImportResult]:
    from agentplane.logic import transfer

    return ok(transfer.import_workspace(access, body))


# --- common env ----------------------------------------------------------------------------------


@app.get(f"{WS}/common-env", responses=PROBLEM_RESPONSES)
def get_common_env(
    ws: str,
    access: ReadSettings,
    reveal: Annotated[bool, Query(description="Return plaintext values (needs secrets:read)")] = False,
) -> Data[CommonEnv]:
    return ok(workspaces.get_common_env(access, reveal))


@app.put(f"{WS}/common-env", middlewares=settings_limit, responses=PROBLEM_RESPONSES)
def put_common_env(ws: str, access: WriteSecrets, body: CommonEnvPut, if_match: IfMatch = None) -> Data[CommonEnv]:
    return ok(workspaces.put_common_env(access, body, if_match))


@app.delete(f"{WS}/common-env", middlewares=settings_limit, responses=DELETED)
def delete_common_env(
    ws: str,
    access: WriteSecrets,
    name: Annotated[
        str | None, Query(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", description="One variable; omit for all")
    ] = None,
) -> Response[Any]:
    workspaces.delete_common_env(access, name)
    return no_content()


lambda_handler = lambda_entry(app)
