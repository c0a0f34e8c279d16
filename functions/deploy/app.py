"""Deploy family: provider connections, capsules with their bindings, the deploy policy, and a
capsule's state versions and outputs, under /api/v1/workspaces/{ws}.

Reading needs `runs:read`; creating and changing capsules `deploy:plan`; what touches credentials
or reveals a sensitive output (connections, bindings, an output's value) `deploy:apply`; the
policy is a workspace setting (`settings:write`).
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
    workspace_scope,
)
from agentplane.logic.deploy import capsules, connections, state
from agentplane.models.common import ListQuery
from agentplane.models.deploy import (
    BindingsPut,
    Capsule,
    CapsuleBindings,
    CapsuleCreate,
    CapsuleUpdate,
    Connection,
    ConnectionCreate,
    ConnectionQuery,
    DeployOutput,
    DeployPolicy,
    DeployPolicyPut,
    RevealedOutput,
    StateVersion,
)
from agentplane.models.envelope import Data, DataList

# Connection credentials and sensitive outputs are sealed with the workspace secrets key.
REQUIRED_SETTINGS = ("kms_key_id",)
app = create_app(requires=REQUIRED_SETTINGS)
WS = "/api/v1/workspaces/<ws>"
CONNECTION = f"{WS}/connections/<connection_id>"
CAPSULE = f"{WS}/capsules/<capsule_id>"
# The policy is a workspace setting: its writes share the settings' per-user limit.
settings_limit = [limit_group("settings-write")]
ReadDeploy = Annotated[Access, workspace_scope("runs:read")]
PlanDeploy = Annotated[Access, workspace_scope("deploy:plan")]
ApplyDeploy = Annotated[Access, workspace_scope("deploy:apply")]
WriteSettings = Annotated[Access, workspace_scope("settings:write")]


@app.post(f"{WS}/connections", responses=CREATED)
def create_connection(ws: str, access: ApplyDeploy, body: ConnectionCreate) -> Response[Data[Connection]]:
    return created(connections.create_connection(access, body))


@app.get(f"{WS}/connections", responses=PROBLEM_RESPONSES)
def list_connections(ws: str, access: ReadDeploy, query: Annotated[ConnectionQuery, Query()]) -> DataList[Connection]:
    items, next_cursor = connections.list_connections(
        access, provider=query.provider, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.get(CONNECTION, responses=PROBLEM_RESPONSES)
def get_connection(ws: str, connection_id: str, access: ReadDeploy) -> Data[Connection]:
    return ok(connections.get_connection(access, connection_id))


@app.delete(CONNECTION, responses=DELETED)
def delete_connection(ws: str, connection_id: str, access: ApplyDeploy) -> Response[Any]:
    connections.delete_connection(access, connection_id)
    return no_content()


@app.post(f"{WS}/capsules", responses=CREATED)
def create_capsule(ws: str, access: PlanDeploy, body: CapsuleCreate) -> Response[Data[Capsule]]:
    return created(capsules.create_capsule(access, body))


@app.get(f"{WS}/capsules", responses=PROBLEM_RESPONSES)
def list_capsules(ws: str, access: ReadDeploy, query: Annotated[ListQuery, Query()]) -> DataList[Capsule]:
    items, next_cursor = capsules.list_capsules(access, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(CAPSULE, responses=PROBLEM_RESPONSES)
def get_capsule(ws: str, capsule_id: str, access: ReadDeploy) -> Data[Capsule]:
    return ok(capsules.get_capsule(access, capsule_id))


@app.patch(CAPSULE, responses=PROBLEM_RESPONSES)
def update_capsule(
    ws: str, capsule_id: str, access: PlanDeploy, body: CapsuleUpdate, if_match: IfMatch = None
) -> Data[Capsule]:
    return ok(capsules.update_capsule(access, capsule_id, body, if_match))


@app.put(f"{CAPSULE}/bindings", responses=PROBLEM_RESPONSES)
def put_bindings(ws: str, capsule_id: str, access: ApplyDeploy, body: BindingsPut) -> Data[CapsuleBindings]:
    return ok(capsules.put_bindings(access, capsule_id, body))


@app.get(f"{CAPSULE}/state-versions", responses=PROBLEM_RESPONSES)
def list_state_versions(
    ws: str, capsule_id: str, access: ReadDeploy, query: Annotated[ListQuery, Query()]
) -> DataList[StateVersion]:
    items, next_cursor = state.list_state_versions(access, capsule_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{CAPSULE}/outputs", responses=PROBLEM_RESPONSES)
def list_outputs(
    ws: str, capsule_id: str, access: ReadDeploy, query: Annotated[ListQuery, Query()]
) -> DataList[DeployOutput]:
    items, next_cursor = state.list_outputs(access, capsule_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{CAPSULE}/outputs/<name>", responses=PROBLEM_RESPONSES)
def reveal_output(ws: str, capsule_id: str, name: str, access: ApplyDeploy) -> Data[RevealedOutput]:
    return ok(state.reveal_output(access, capsule_id, name))


@app.get(f"{WS}/deploy-policy", responses=PROBLEM_RESPONSES)
def get_policy(ws: str, access: ReadDeploy) -> Data[DeployPolicy]:
    return ok(capsules.get_policy(access))


@app.put(f"{WS}/deploy-policy", middlewares=settings_limit, responses=PROBLEM_RESPONSES)
def put_policy(ws: str, access: WriteSettings, body: DeployPolicyPut, if_match: IfMatch = None) -> Data[DeployPolicy]:
    return ok(capsules.put_policy(access, body, if_match))


lambda_handler = lambda_entry(app)
