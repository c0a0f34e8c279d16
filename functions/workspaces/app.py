"""Workspaces family: workspaces, members, invites, teams, export/import and common env."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from agentplane.access import workspace_access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    Data,
    DataList,
    Limit,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import workspaces
from agentplane.models.workspaces import Membership, Workspace, WorkspaceCreate

app = create_app()


@app.post("/api/v1/workspaces", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_workspace(body: WorkspaceCreate) -> Response[Data[Workspace]]:
    return created(workspaces.create_workspace(request_principal(app), body, request_id(app)))


@app.get("/api/v1/workspaces", responses=PROBLEM_RESPONSES)
def list_workspaces(limit: Limit = 50, cursor: Cursor = None) -> DataList[Membership]:
    principal = request_principal(app)
    scope = f"workspaces:{principal.user_id}"
    items, last_key = workspaces.list_memberships(principal.user_id or "", limit, decode_cursor(cursor, scope, {}))
    return page(items, encode_cursor(last_key, scope, {}), limit)


@app.get("/api/v1/workspaces/<ws>", responses=PROBLEM_RESPONSES)
def get_workspace(ws: str) -> Data[Workspace]:
    workspace_access(request_principal(app), ws)
    return ok(Workspace.model_validate(workspaces.load_workspace(ws)))


lambda_handler = lambda_entry(app)
