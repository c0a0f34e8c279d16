"""Me family: /api/v1/me — the caller's profile, workspaces, personal access tokens and devices."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.http import (
    PROBLEM_RESPONSES,
    create_app,
    created,
    lambda_entry,
    no_content,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import me
from agentplane.models.common import ListQuery
from agentplane.models.envelope import Data, DataList
from agentplane.models.me import (
    PersonalAccessToken,
    PersonalAccessTokenCreate,
    PersonalAccessTokenCreated,
    Profile,
    ProfileUpdate,
    PushDevice,
    PushDeviceRegister,
)
from agentplane.models.workspaces import Membership

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/me"


@app.get(BASE, responses=PROBLEM_RESPONSES)
def get_me() -> Data[Profile]:
    return ok(me.get_profile(request_principal(app)))


@app.patch(BASE, responses=PROBLEM_RESPONSES)
def update_me(body: ProfileUpdate) -> Data[Profile]:
    return ok(me.update_profile(request_principal(app), body, request_id(app)))


@app.get(f"{BASE}/workspaces", responses=PROBLEM_RESPONSES)
def list_my_workspaces(query: Annotated[ListQuery, Query()]) -> DataList[Membership]:
    items, next_cursor = me.list_my_workspaces(request_principal(app), query.limit, query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{BASE}/personal-access-tokens", responses=PROBLEM_RESPONSES)
def list_personal_access_tokens(query: Annotated[ListQuery, Query()]) -> DataList[PersonalAccessToken]:
    items, next_cursor = me.list_pats(request_principal(app), query.limit, query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{BASE}/personal-access-tokens", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_personal_access_token(body: PersonalAccessTokenCreate) -> Response[Data[PersonalAccessTokenCreated]]:
    return created(me.create_pat(request_principal(app), body, request_id(app)))


@app.delete(f"{BASE}/personal-access-tokens/<pat_id>", responses={204: {"description": "Revoked"}, **PROBLEM_RESPONSES})
def revoke_personal_access_token(pat_id: str) -> Response[Any]:
    me.revoke_pat(request_principal(app), pat_id, request_id(app))
    return no_content()


@app.post(f"{BASE}/devices", responses={201: {"description": "Registered"}, **PROBLEM_RESPONSES})
def register_device(body: PushDeviceRegister) -> Response[Data[PushDevice]]:
    return created(me.register_device(request_principal(app), body, request_id(app)))


@app.delete(f"{BASE}/devices/<device_id>", responses={204: {"description": "Unregistered"}, **PROBLEM_RESPONSES})
def delete_device(device_id: str) -> Response[Any]:
    me.delete_device(request_principal(app), device_id, request_id(app))
    return no_content()


lambda_handler = lambda_entry(app)
