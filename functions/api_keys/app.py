"""API keys family: /api/v1/workspaces/{ws}/api-keys.

Managing a workspace's keys takes the `admin` scope (owners and admins): a key is a standing
credential of the workspace, and one key can never be given more than its maker holds.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    IfMatch,
    Limit,
    create_app,
    created,
    lambda_entry,
    no_content,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import api_keys
from agentplane.models.api_keys import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyRotate,
    ApiKeyUpdate,
    ApiKeyUsagePage,
    ApiKeyWithSecret,
)
from agentplane.models.envelope import Data, DataList

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/api-keys"
SCOPE = "admin"


@app.post(BASE, responses={201: {"description": "Created; the secret is in `key`, shown once"}, **PROBLEM_RESPONSES})
def create_api_key(ws: str, body: ApiKeyCreate) -> Response[Data[ApiKeyWithSecret]]:
    access = workspace_access(request_principal(app), ws, SCOPE)
    return created(api_keys.create_api_key(access, body, request_id(app)))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_api_keys(
    ws: str,
    include_revoked: Annotated[bool, Query(description="Also list revoked keys")] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[ApiKey]:
    access = workspace_access(request_principal(app), ws, SCOPE)
    items, next_cursor = api_keys.list_api_keys(access, include_revoked=include_revoked, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{BASE}/<key_id>", responses=PROBLEM_RESPONSES)
def get_api_key(ws: str, key_id: str) -> Data[ApiKey]:
    access = workspace_access(request_principal(app), ws, SCOPE)
    return ok(api_keys.get_api_key(access, key_id))


@app.patch(f"{BASE}/<key_id>", responses=PROBLEM_RESPONSES)
def update_api_key(
    ws: str,
    key_id: str,
    body: ApiKeyUpdate,
    if_match: IfMatch = None,
) -> Data[ApiKey]:
    access = workspace_access(request_principal(app), ws, SCOPE)
    return ok(api_keys.update_api_key(access, key_id, body, if_match, request_id(app)))


@app.delete(f"{BASE}/<key_id>", responses={204: {"description": "Deleted"}, **PROBLEM_RESPONSES})
def delete_api_key(ws: str, key_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, SCOPE)
    api_keys.delete_api_key(access, key_id, request_id(app))
    return no_content()


@app.post(f"{BASE}/<key_id>/revoke", responses=PROBLEM_RESPONSES)
def revoke_api_key(ws: str, key_id: str) -> Data[ApiKey]:
    access = workspace_access(request_principal(app), ws, SCOPE)
    return ok(api_keys.revoke_api_key(access, key_id, request_id(app)))


@app.post(f"{BASE}/<key_id>/rotate", responses=PROBLEM_RESPONSES)
def rotate_api_key(ws: str, key_id: str, body: Annotated[ApiKeyRotate | None, Body()] = None) -> Data[ApiKeyWithSecret]:
    access = workspace_access(request_principal(app), ws, SCOPE)
    grace_hours = (body or ApiKeyRotate()).grace_hours
    return ok(api_keys.rotate_api_key(access, key_id, grace_hours, request_id(app)))


@app.post(f"{BASE}/<key_id>/roll", responses=PROBLEM_RESPONSES)
def roll_api_key(ws: str, key_id: str) -> Data[ApiKeyWithSecret]:
    access = workspace_access(request_principal(app), ws, SCOPE)
    return ok(api_keys.roll_api_key(access, key_id, request_id(app)))


@app.get(f"{BASE}/<key_id>/usage", responses=PROBLEM_RESPONSES)
def get_api_key_usage(ws: str, key_id: str, limit: Limit = 50, cursor: Cursor = None) -> ApiKeyUsagePage:
    access = workspace_access(request_principal(app), ws, SCOPE)
    usage, next_cursor = api_keys.get_usage(access, key_id, limit=limit, cursor=cursor)
    return ApiKeyUsagePage.model_validate({"data": usage, "meta": {"next_cursor": next_cursor, "limit": limit}})


lambda_handler = lambda_entry(app)
