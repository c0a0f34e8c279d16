"""Deploy control's configuration: provider connections, capsules and their bindings, the deploy
policy, and a capsule's state versions and outputs."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from agentplane import keys, raw_items
from tests.conftest import Client, register_and_login

# Shaped like no token redaction knows by its form: only the connection's own copy can find it.
ACCESS_KEY = "s3cr3t-akia-tf-provider-7c41"
SECRET_KEY = "wJalrXUtnFEMI-deploy-credential-55c9"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
DB_PASSWORD = "output-pw-3f81b6c2d9"
SOURCE = {"repository_url": "https://github.com/acme/infra", "path": "stacks/web", "ref": "main"}


def ws_path(ws: dict[str, Any], tail: str) -> str:
    return f"/api/v1/workspaces/{ws['id']}/{tail}"


def new_connection(api: Client, ws: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"name": "prod-aws", "provider": "aws", "credentials": CREDENTIALS, **fields}
    created = api.post(ws_path(ws, "connections"), body)
    assert created.status == 201, created.body
    return created.json["data"]


def new_capsule(api: Client, ws: dict[str, Any], **fields: Any) -> dict[str, Any]:
    created = api.post(ws_path(ws, "capsules"), {"name": "web", "source": SOURCE, **fields})
    assert created.status == 201, created.body
    return created.json["data"]


def bind(api: Client, ws: dict[str, Any], capsule: dict[str, Any], *bindings: tuple[str, str]) -> Any:
    body = {"bindings": [{"provider": provider, "connection_id": cid} for provider, cid in bindings]}
    return api.put(ws_path(ws, f"capsules/{capsule['id']}/bindings"), body)


def audit_rows(api: Client, ws: dict[str, Any], action: str) -> list[dict[str, Any]]:
    listed = api.get(ws_path(ws, f"audit-logs?action={action}"))
    assert listed.status == 200, listed.body
    return list(listed.json["data"])


def add_member(ws: dict[str, Any], account: dict[str, Any], role: str) -> None:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    raw_items.put(member_item(ws["id"], ws["name"], account["user"]["id"], Role(role), iso()))


def scoped_token(api: Client, account: dict[str, Any], *abilities: str) -> str:
    body = {"email": account["email"], "password": account["password"], "name": "cli", "abilities": list(abilities)}
    issued = api.post("/api/v1/auth/token", body, token="", ip="10.9.9.7")
    assert issued.status == 201, issued.body
    return str(issued.json["data"]["token"])


def collect(api: Client, path: str, limit: int = 2) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        listed = api.get(f"{path}?limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert listed.status == 200, listed.body
        seen += listed.json["data"]
        cursor = listed.json["meta"]["next_cursor"]
        if not cursor:
            return seen


def resolutions(capsule: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(b["resolution"], b["detail"]) for b in capsule["bindings"]]


# --- connections ---------------------------------------------------------------------------------


def test_a_connection_shows_its_credential_names_and_never_their_values(api, user, workspace, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="botocore")  # what goes to DynamoDB and KMS
    api.token = user["token"]
    created = api.post(
        ws_path(workspace, "connections"),
        {"name": "prod-aws", "provider": "aws", "description": "Production account", "credentials": CREDENTIALS},
    )
    assert created.status == 201, created.body
    connection = created.json["data"]
    assert connection["id"].startswith("conn_")
    assert connection["credential_names"] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    # Without a recipe, every credential is exported under its own name.
    assert connection["recipe"] == {
        "env": {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"},
        "files": {},
    }
    dns_token = {"CF_TOKEN": "cf-" + "9" * 20}
    other = new_connection(api, workspace, name="dns", provider="cloudflare", credentials=dns_token)

    answers = [
        created,
        api.get(ws_path(workspace, f"connections/{connection['id']}")),
        api.get(ws_path(workspace, "connections")),
        api.get(ws_path(workspace, "connections?provider=aws")),
    ]
    assert answers[1].json["data"] == connection
    assert [c["id"] for c in answers[2].json["data"]] == [connection["id"], other["id"]]
    assert [c["id"] for c in answers[3].json["data"]] == [connection["id"]]
    rows = audit_rows(api, workspace, "connection.created")
    assert {row["target_id"] for row in rows} == {connection["id"], other["id"]}
    mine = next(row for row in rows if row["target_id"] == connection["id"])
    assert mine["details"] == {
        "name": "prod-aws",
        "provider": "aws",
        "credential_names": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    }
    stored = raw_items.get(keys.connection_key(workspace["id"], connection["id"]))
    assert stored is not None and stored["sealed"]
    logged = caplog.text + "".join(capfd.readouterr())
    assert "TransactWriteItems" in logged  # the capture sees the calls the writes made
    for secret in (ACCESS_KEY, SECRET_KEY):
        for text in [*(answer.body for answer in answers), json.dumps(rows), json.dumps(stored), logged]:
            assert secret not in text


@pytest.mark.parametrize(
    "fields",
    [
        {"recipe": {"env": {"AWS_PROFILE_KEY": "NOT_A_CREDENTIAL"}}},
        {"provider": "AWS!"},
        {"credentials": {}},
        {"recipe": {"files": {"/etc/aws/credentials": "AWS_SECRET_ACCESS_KEY"}}},
        {"recipe": {"files": {"../outside/credentials": "AWS_SECRET_ACCESS_KEY"}}},
        {"recipe": {"files": {"config/../../credentials": "AWS_SECRET_ACCESS_KEY"}}},
        {"credentials": {"AWS_ACCESS_KEY_ID": ""}},
    ],
    ids=["unknown-recipe-credential", "bad-provider", "no-credentials", "absolute-file", "file-up", "file-up-inside",
         "empty-value"],
)  # fmt: skip
def test_bad_connection_input_is_a_422_problem_and_stores_nothing(api, user, workspace, fields):
    api.token = user["token"]
    body = {"name": "prod-aws", "provider": "aws", "credentials": CREDENTIALS, **fields}
    refused = api.post(ws_path(workspace, "connections"), body)
    assert refused.status == 422, refused.body
    assert refused.header("Content-Type") == "application/problem+json"
    assert refused.json["errors"]
    assert ACCESS_KEY not in refused.body and SECRET_KEY not in refused.body
    assert api.get(ws_path(workspace, "connections")).json["data"] == []
    assert audit_rows(api, workspace, "connection.created") == []


def test_a_recipe_exports_credentials_as_the_env_names_and_files_it_gives(api, user, workspace):
    api.token = user["token"]
    recipe = {"env": {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID"}, "files": {".aws/secret": "AWS_SECRET_ACCESS_KEY"}}
    connection = new_connection(api, workspace, recipe=recipe)
    assert connection["recipe"] == recipe


def test_deleting_a_connection_removes_it_and_the_copy_redaction_keeps(api, user, workspace):
    from agentplane.logic import known_secrets

    api.token = user["token"]
    connection = new_connection(api, workspace)
    assert set(known_secrets.read(workspace["id"])) == {ACCESS_KEY, SECRET_KEY}
    path = ws_path(workspace, f"connections/{connection['id']}")
    assert api.delete(path).status == 204
    assert api.get(path).status == 404
    assert api.delete(path).status == 404
    assert api.get(ws_path(workspace, "connections")).json["data"] == []
    assert known_secrets.read(workspace["id"]) == ()
    [row] = audit_rows(api, workspace, "connection.deleted")
    assert row["target_id"] == connection["id"] and row["details"] == {"name": "prod-aws", "provider": "aws"}


def test_connection_ids_never_minted_are_404(api, user, workspace):
    api.token = user["token"]
    assert api.get(ws_path(workspace, "connections/conn_nope")).status == 404
    assert api.delete(ws_path(workspace, "connections/" + "x" * 150)).status == 404


# --- capsules and bindings -----------------------------------------------------------------------


def test_a_capsule_is_created_unbound_and_shown_with_its_defaults(api, user, workspace):
    api.token = user["token"]
    capsule = new_capsule(api, workspace)
    assert capsule["id"].startswith("cap_")
    assert capsule["source"] == SOURCE
    assert (capsule["tool"], capsule["tool_version"], capsule["auto_apply"]) == ("opentofu", "1.8.0", False)
    assert capsule["bindings"] == [] and capsule["state"] is None and capsule["version"] == 1
    assert api.get(ws_path(workspace, f"capsules/{capsule['id']}")).json["data"] == capsule
    listed = collect(api, ws_path(workspace, "capsules"), limit=1)
    assert listed == [capsule]
    assert [row["target_id"] for row in audit_rows(api, workspace, "capsule.created")] == [capsule["id"]]


def test_a_capsules_project_must_be_a_live_project_of_the_workspace(api, user, workspace):
    api.token = user["token"]
    unknown = api.post(ws_path(workspace, "capsules"), {"name": "web", "source": SOURCE, "project_id": "prj_nope"})
    assert unknown.status == 404, unknown.body
    assert api.get(ws_path(workspace, "capsules")).json["data"] == []
    project = api.post(ws_path(workspace, "projects"), {"name": "Infra"}).json["data"]
    capsule = new_capsule(api, workspace, project_id=project["id"])
    assert capsule["project_id"] == project["id"]
    assert api.delete(ws_path(workspace, f"projects/{project['id']}")).status == 204
    gone = api.post(ws_path(workspace, "capsules"), {"name": "web", "source": SOURCE, "project_id": project["id"]})
    assert gone.status == 404


def test_bad_capsule_sources_are_422(api, user, workspace):
    api.token = user["token"]
    for source in ({**SOURCE, "path": "/abs"}, {**SOURCE, "path": "../up"}, {**SOURCE, "repository_url": "ftp://x"}):
        assert api.post(ws_path(workspace, "capsules"), {"name": "web", "source": source}).status == 422
    assert api.post(ws_path(workspace, "capsules"), {"name": "web", "source": SOURCE, "tool": "pulumi"}).status == 422
    assert api.get(ws_path(workspace, "capsules")).json["data"] == []


def test_patch_changes_a_capsule_and_a_stale_version_changes_nothing(api, user, workspace):
    api.token = user["token"]
    capsule = new_capsule(api, workspace)
    path = ws_path(workspace, f"capsules/{capsule['id']}")
    changed = api.patch(path, {"tool": "terraform", "tool_version": "1.9.2", "version": 1})
    assert changed.status == 200, changed.body
    assert changed.header("ETag") == '"2"'
    assert (changed.json["data"]["tool"], changed.json["data"]["version"]) == ("terraform", 2)
    stale_body = api.patch(path, {"auto_apply": True, "version": 1})
    stale_header = api.patch(path, {"auto_apply": True}, headers={"If-Match": '"1"'})
    assert stale_body.status == 412 and stale_header.status == 412
    assert stale_body.json["current_version"] == 2
    assert api.get(path).json["data"]["auto_apply"] is False
    assert api.patch(path, {"auto_apply": True}, headers={"If-Match": '"2"'}).json["data"]["version"] == 3
    fields = sorted(row["details"]["fields"] for row in audit_rows(api, workspace, "capsule.updated"))
    assert fields == [["auto_apply"], ["tool", "tool_version"]]


def test_a_binding_resolves_until_its_connection_is_deleted(api, user, workspace):
    api.token = user["token"]
    connection = new_connection(api, workspace)
    capsule = new_capsule(api, workspace)
    put = bind(api, workspace, capsule, ("aws", connection["id"]))
    assert put.status == 200, put.body
    assert put.json["data"] == {
        "bindings": [
            {
                "provider": "aws",
                "connection_id": connection["id"],
                "resolution": "resolved_provider_connection",
                "detail": None,
            }
        ]
    }
    path = ws_path(workspace, f"capsules/{capsule['id']}")
    assert resolutions(api.get(path).json["data"]) == [("resolved_provider_connection", None)]
    [row] = audit_rows(api, workspace, "capsule.bindings_updated")
    assert row["details"] == {"bindings": [{"provider": "aws", "connection_id": connection["id"]}]}

    # Deleting a bound connection is allowed; the binding then says it is gone.
    assert api.delete(ws_path(workspace, f"connections/{connection['id']}")).status == 204
    shown = api.get(path).json["data"]
    [(resolution, detail)] = resolutions(shown)
    assert resolution == "blocked_missing_connection" and connection["id"] in str(detail)
    assert resolutions(api.get(ws_path(workspace, "capsules")).json["data"][0]) == [(resolution, detail)]
    assert resolutions(api.patch(path, {"name": "web-2"}).json["data"]) == [(resolution, detail)]

    # Re-bound to a new connection, it resolves again.
    replacement = new_connection(api, workspace, name="prod-aws-2")
    assert resolutions(bind(api, workspace, capsule, ("aws", replacement["id"])).json["data"]) == [
        ("resolved_provider_connection", None)
    ]


def test_a_binding_to_no_such_connection_is_stored_blocked(api, user, workspace):
    api.token = user["token"]
    capsule = new_capsule(api, workspace)
    put = bind(api, workspace, capsule, ("aws", "conn_00000000000000000000000000"), ("google", "not-an-id"))
    assert put.status == 200, put.body
    assert [b["resolution"] for b in put.json["data"]["bindings"]] == ["blocked_missing_connection"] * 2


def test_binding_a_connection_of_another_provider_is_422_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    aws = new_connection(api, workspace)
    capsule = new_capsule(api, workspace)
    assert bind(api, workspace, capsule, ("aws", aws["id"])).status == 200
    refused = bind(api, workspace, capsule, ("aws", aws["id"]), ("google", aws["id"]))
    assert refused.status == 422, refused.body
    assert refused.json["errors"][0]["field"] == "bindings.1.connection_id"
    shown = api.get(ws_path(workspace, f"capsules/{capsule['id']}")).json["data"]
    assert [(b["provider"], b["connection_id"]) for b in shown["bindings"]] == [("aws", aws["id"])]
    assert shown["version"] == 2
    assert bind(api, workspace, capsule, ("aws", aws["id"]), ("aws", aws["id"])).status == 422  # bound once


def test_a_policy_that_forbids_the_provider_or_the_connection_blocks_the_binding(api, user, workspace):
    api.token = user["token"]
    policy_path = ws_path(workspace, "deploy-policy")
    default = api.get(policy_path)
    assert default.status == 200
    assert default.json["data"]["allowed_providers"] is None and default.json["data"]["version"] == 0
    connection = new_connection(api, workspace)
    capsule = new_capsule(api, workspace)
    capsule_path = ws_path(workspace, f"capsules/{capsule['id']}")
    assert bind(api, workspace, capsule, ("aws", connection["id"])).status == 200

    only_google = api.put(policy_path, {"allowed_providers": ["google"]})
    assert only_google.status == 200, only_google.body
    assert only_google.json["data"]["version"] == 1 and only_google.json["data"]["allowed_providers"] == ["google"]
    [(resolution, detail)] = resolutions(api.get(capsule_path).json["data"])
    assert resolution == "blocked_policy" and "provider aws" in str(detail)

    other_connection = {"allowed_providers": None, "allowed_connections": {"aws": ["conn_someotherconnection00000000"]}}
    assert api.put(policy_path, {**other_connection, "version": 1}).status == 200
    [(resolution, detail)] = resolutions(bind(api, workspace, capsule, ("aws", connection["id"])).json["data"])
    assert resolution == "blocked_policy" and connection["id"] in str(detail)

    allowed = {"allowed_connections": {"aws": [connection["id"]]}}
    assert api.put(policy_path, {**allowed, "version": 1}).status == 412  # stale: nothing written
    assert api.get(policy_path).json["data"]["version"] == 2
    assert api.put(policy_path, allowed, headers={"If-Match": '"2"'}).status == 200
    assert resolutions(api.get(capsule_path).json["data"]) == [("resolved_provider_connection", None)]
    assert len(audit_rows(api, workspace, "deploy_policy.updated")) == 3


def test_showing_a_capsule_resolves_its_bindings_with_one_batch_read(api, user, workspace):
    from tests.dynamo_calls import counted_calls

    api.token = user["token"]
    first = new_connection(api, workspace)
    second = new_connection(api, workspace, name="dns", provider="cloudflare", credentials={"CF_TOKEN": "x" * 20})
    capsule = new_capsule(api, workspace)
    assert bind(api, workspace, capsule, ("aws", first["id"]), ("cloudflare", second["id"])).status == 200
    path = ws_path(workspace, f"capsules/{capsule['id']}")
    api.get(path)  # the caller's token is known from here on
    with counted_calls() as calls:
        assert api.get(path).status == 200
    # The capsule (with the caller's check), then the policy and both connections together.
    assert [call.operation for call in calls] == ["BatchGetItem", "BatchGetItem"]
    assert calls[1].keys == 3


# --- scopes and tenancy --------------------------------------------------------------------------


def test_connections_and_bindings_need_deploy_apply_and_capsules_deploy_plan(api, user, workspace):
    api.token = user["token"]
    capsule = new_capsule(api, workspace)
    planner = scoped_token(api, user, "runs:read", "deploy:plan")
    refused = api.post(
        ws_path(workspace, "connections"), {"name": "x", "provider": "aws", "credentials": CREDENTIALS}, token=planner
    )
    assert refused.status == 403 and refused.json["required_scope"] == "deploy:apply"
    assert api.post(ws_path(workspace, "capsules"), {"name": "api", "source": SOURCE}, token=planner).status == 201
    assert bind(api, workspace, capsule).status == 200
    api.token = planner
    assert bind(api, workspace, capsule).json["required_scope"] == "deploy:apply"
    policy = api.put(ws_path(workspace, "deploy-policy"), {"allowed_providers": ["aws"]})
    assert policy.status == 403 and policy.json["required_scope"] == "settings:write"

    viewer = register_and_login(api)
    add_member(workspace, viewer, "viewer")
    api.token = viewer["token"]
    assert api.get(ws_path(workspace, "capsules")).status == 200
    assert api.get(ws_path(workspace, f"capsules/{capsule['id']}")).status == 200
    assert api.get(ws_path(workspace, "connections")).status == 200
    created = api.post(ws_path(workspace, "capsules"), {"name": "api", "source": SOURCE})
    assert created.status == 403 and created.json["required_scope"] == "deploy:plan"

    member = register_and_login(api)
    add_member(workspace, member, "member")
    api.token = member["token"]
    assert api.post(ws_path(workspace, "capsules"), {"name": "api", "source": SOURCE}).status == 201
    connection = {"name": "x", "provider": "aws", "credentials": CREDENTIALS}
    as_member = api.post(ws_path(workspace, "connections"), connection)
    assert as_member.status == 403 and as_member.json["required_scope"] == "deploy:apply"


def test_another_workspaces_caller_gets_404_for_everything(api, user, workspace):
    api.token = user["token"]
    connection = new_connection(api, workspace)
    capsule = new_capsule(api, workspace)
    stranger = register_and_login(api)
    api.token = stranger["token"]
    own = api.post("/api/v1/workspaces", {"name": "Elsewhere"})
    assert own.status == 201
    for path in (
        "connections",
        f"connections/{connection['id']}",
        "capsules",
        f"capsules/{capsule['id']}",
        f"capsules/{capsule['id']}/state-versions",
        f"capsules/{capsule['id']}/outputs",
        f"capsules/{capsule['id']}/outputs/anything",
        "deploy-policy",
    ):
        assert api.get(ws_path(workspace, path)).status == 404, path
    assert api.delete(ws_path(workspace, f"connections/{connection['id']}")).status == 404
    assert bind(api, workspace, capsule, ("aws", connection["id"])).status == 404
    assert api.patch(ws_path(workspace, f"capsules/{capsule['id']}"), {"name": "mine"}).status == 404
    # Their own workspace does not know our capsule either.
    assert api.get(ws_path(own.json["data"], f"capsules/{capsule['id']}")).status == 404


# --- state versions and outputs ------------------------------------------------------------------


def write_state(ws: dict[str, Any], capsule: dict[str, Any], serials: range) -> None:
    """What applies leave behind, written as the run side writes it: state versions, and the
    capsule's current state with its outputs (the sensitive one sealed)."""
    from agentplane import crypto
    from agentplane.entities.deploy import CapsuleItem, StateVersionItem
    from agentplane.store import get_store

    store = get_store()
    for serial in serials:
        store.create(
            StateVersionItem(
                workspace_id=ws["id"],
                capsule_id=capsule["id"],
                id=f"sv_{serial}",
                serial=serial,
                lineage="lineage-1",
                checksum=f"sha256:{serial}",
                run_id=f"run_{serial}",
                resources=serial * 2,
                object_key=keys.state_object(ws["id"], capsule["id"]),
                object_version=f"v{serial}",
                created_at=f"2026-01-0{serial}T00:00:00.000Z",
            )
        )
    outputs = {
        "endpoint": {"value": "https://web.example.com", "sensitive": False},
        "db_password": {"sealed": crypto.seal(json.dumps(DB_PASSWORD), ws["id"]), "sensitive": True},
    }
    last = serials[-1]
    store.adjust(
        CapsuleItem,
        keys.capsule_key(ws["id"], capsule["id"]),
        [
            CapsuleItem.outputs.set(outputs),
            CapsuleItem.state_serial.set(last),
            CapsuleItem.state_run_id.set(f"run_{last}"),
        ],
    )


def test_state_versions_are_listed_newest_first_in_pages(api, user, workspace):
    api.token = user["token"]
    capsule = new_capsule(api, workspace)
    assert api.get(ws_path(workspace, f"capsules/{capsule['id']}/state-versions")).json["data"] == []
    write_state(workspace, capsule, range(1, 6))
    listed = collect(api, ws_path(workspace, f"capsules/{capsule['id']}/state-versions"), limit=2)
    assert [v["serial"] for v in listed] == [5, 4, 3, 2, 1]
    assert listed[0] == {
        "id": "sv_5",
        "capsule_id": capsule["id"],
        "serial": 5,
        "lineage": "lineage-1",
        "checksum": "sha256:5",
        "run_id": "run_5",
        "resources": 10,
        "created_at": "2026-01-05T00:00:00.000Z",
    }
    shown = api.get(ws_path(workspace, f"capsules/{capsule['id']}")).json["data"]
    assert shown["state"]["serial"] == 5 and shown["state"]["run_id"] == "run_5"
    assert api.get(ws_path(workspace, "capsules/cap_00000000000000000000000000/state-versions")).status == 404


def test_outputs_mask_sensitive_values_and_only_deploy_apply_reveals_them_audited(api, user, workspace):
    api.token = user["token"]
    capsule = new_capsule(api, workspace)
    write_state(workspace, capsule, range(1, 4))
    outputs_path = ws_path(workspace, f"capsules/{capsule['id']}/outputs")
    listed = api.get(outputs_path)
    assert listed.status == 200
    assert listed.json["data"] == [
        {"name": "db_password", "value": None, "sensitive": True, "serial": 3, "run_id": "run_3"},
        {"name": "endpoint", "value": "https://web.example.com", "sensitive": False, "serial": 3, "run_id": "run_3"},
    ]
    assert [o["name"] for o in collect(api, outputs_path, limit=1)] == ["db_password", "endpoint"]
    assert DB_PASSWORD not in api.get(ws_path(workspace, f"capsules/{capsule['id']}")).body

    reader = scoped_token(api, user, "runs:read")
    refused = api.get(f"{outputs_path}/db_password", token=reader)
    assert refused.status == 403 and refused.json["required_scope"] == "deploy:apply"
    assert api.get(outputs_path, token=reader).status == 200
    assert audit_rows(api, workspace, "deploy.output_revealed") == []

    revealed = api.get(f"{outputs_path}/db_password")
    assert revealed.status == 200, revealed.body
    assert revealed.json["data"] == {
        "name": "db_password",
        "value": DB_PASSWORD,
        "sensitive": True,
        "serial": 3,
        "run_id": "run_3",
    }
    [row] = audit_rows(api, workspace, "deploy.output_revealed")
    assert row["target_id"] == capsule["id"]
    assert row["details"] == {"capsule_id": capsule["id"], "output": "db_password"}
    assert DB_PASSWORD not in json.dumps(row)

    plain = api.get(f"{outputs_path}/endpoint").json["data"]
    assert (plain["value"], plain["sensitive"]) == ("https://web.example.com", False)
    assert len(audit_rows(api, workspace, "deploy.output_revealed")) == 1  # only sensitive reads are audited
    assert api.get(f"{outputs_path}/no_such_output").status == 404


# --- redaction -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("executions")
def test_a_connection_credential_a_run_repeats_is_stored_redacted(api, user, workspace):
    api.token = user["token"]
    new_connection(api, workspace)
    runs = ws_path(workspace, "runs")
    run = api.post(runs, {"title": "Plan web", "prompt": "tofu plan", "agent": "builder"}).json["data"]
    assert api.post(f"{runs}/{run['id']}/start").status == 200
    assert api.post(f"{runs}/{run['id']}/claim", {"worker_id": "w1"}).status == 200
    line = f"export AWS_ACCESS_KEY_ID={ACCESS_KEY}; secret {SECRET_KEY}"
    appended = api.post(f"{runs}/{run['id']}/events", {"events": [{"event_type": "log", "data": {"line": line}}]})
    assert appended.status == 201, appended.body
    served = api.get(f"{runs}/{run['id']}/events").body
    stored = str(raw_items.query(keys.run_events_pk(workspace["id"], run["id"]), limit=100, consistent=True).items)
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret not in served and secret not in stored
    assert "export AWS_ACCESS_KEY_ID=[REDACTED]" in served
