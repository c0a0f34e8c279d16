"""template.yaml: it validates, lints and builds, and it agrees with the code it deploys."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack import aws, template
from tools import apps

ROOT = template.ROOT
SAM = os.environ.get("SAM_CLI") or str(ROOT / ".venv-sam" / "bin" / "sam")
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")
# sam needs credentials and a region to exist, never to be valid: nothing here goes online to AWS.
OFFLINE = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "offline",
    "AWS_SECRET_ACCESS_KEY": "offline",
    "AWS_SESSION_TOKEN": "offline",
    "AWS_DEFAULT_REGION": "us-east-1",
    "SAM_CLI_TELEMETRY": "0",
}
STATE_MACHINE_FILES = sorted((ROOT / "statemachine").glob("*.asl.json"))


def run(*command: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    if not Path(command[0]).is_file():
        pytest.fail(f"{command[0]} is missing: `make test` installs it")
    return subprocess.run(command, cwd=ROOT, env=OFFLINE, capture_output=True, text=True, timeout=timeout, check=False)


def function_props(logical_id: str) -> dict[str, Any]:
    return dict(template.resources()[logical_id]["Properties"])


FUNCTIONS = sorted(template.functions())


def test_sam_validate_with_lint_is_clean() -> None:
    result = run(SAM, "validate", "--lint", "--template-file", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_is_clean() -> None:
    result = run(CFN_LINT, "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_sam_build_without_a_container_packs_the_shared_layer(tmp_path: Path) -> None:
    build = tmp_path / "build"
    result = run(
        SAM,
        "build",
        "--template-file",
        "template.yaml",
        "--build-dir",
        str(build),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-cached",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (build / "SharedLayer" / "python" / "agentplane" / "__init__.py").is_file()
    assert (build / "SharedLayer" / "python" / "pydantic").is_dir(), "the layer's dependencies were not installed"
    assert (build / "SharedLayer" / "python" / "aws_xray_sdk").is_dir(), "Tracing: Active needs the X-Ray SDK"
    assert_every_module_has_bytecode_that_needs_no_source_check(build / "SharedLayer" / "python")
    for logical_id, function in template.functions().items():
        module = function.handler.rsplit(".", 1)[0] + ".py"
        if (function.code_uri / module).is_file():  # a missing one is reported by the CodeUri test
            assert (build / logical_id / module).is_file(), f"{logical_id} was built without its handler"


def _defines(module: Path, name: str) -> bool:
    tree = ast.parse(module.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return True
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return True
    return False


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_function_code_uri_holds_its_handler(logical_id: str) -> None:
    function = template.functions()[logical_id]
    module_name, attribute = function.handler.rsplit(".", 1)
    module = function.code_uri / f"{module_name}.py"
    assert function.code_uri.is_dir(), f"{logical_id}: CodeUri {function.code_uri.relative_to(ROOT)} does not exist"
    assert module.is_file(), f"{logical_id}: {module.relative_to(ROOT)} does not exist"
    assert _defines(module, attribute), f"{logical_id}: {module.relative_to(ROOT)} defines no {attribute}"


@pytest.mark.parametrize("logical_id", sorted(apps.http_functions()))
def test_template_routes_are_exactly_the_routes_the_code_serves(logical_id: str) -> None:
    function = template.functions()[logical_id]
    if apps.load_app(logical_id) is None:
        pytest.fail(f"{logical_id}: {function.code_uri.relative_to(ROOT)} has no Powertools `app`")
    declared = {
        route.route_key
        for route in template.http_routes()
        if route.function.logical_id == logical_id and route.path != template.DEFAULT_ROUTE
    }
    served = {route.route_key for route in apps.resolver_routes(logical_id)}
    unserved, unrouted = sorted(declared - served), sorted(served - declared)
    assert not unserved, f"{logical_id}: in template.yaml but not served by its resolver: {unserved}"
    assert not unrouted, f"{logical_id}: served by the code but API Gateway never routes it here: {unrouted}"


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_function_logs_to_its_own_group_with_a_retention(logical_id: str) -> None:
    logging_config = function_props(logical_id).get("LoggingConfig") or {}
    reference = logging_config.get("LogGroup")
    assert isinstance(reference, dict) and "Ref" in reference, f"{logical_id} has no LoggingConfig.LogGroup"
    group = template.resources().get(reference["Ref"])
    assert group and group["Type"] == "AWS::Logs::LogGroup", f"{logical_id} logs to {reference['Ref']}"
    assert group["Properties"].get("RetentionInDays"), f"{reference['Ref']} keeps logs forever"
    sharing = [
        other
        for other in FUNCTIONS
        if other != logical_id and (function_props(other).get("LoggingConfig") or {}).get("LogGroup") == reference
    ]
    assert not sharing, f"{logical_id} shares {reference['Ref']} with {sharing}"


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_function_states_its_policies(logical_id: str) -> None:
    # An explicit list, even an empty one, is a decision about least privilege; an absent one is not.
    policies = function_props(logical_id).get("Policies")
    assert isinstance(policies, list), f"{logical_id} declares no Policies"
    for policy in policies:
        assert policy != "AdministratorAccess" and "FullAccess" not in str(policy), f"{logical_id}: {policy}"


@pytest.fixture(scope="module")
def emulated_resources() -> Iterator[aws.Resources]:
    """The template's resources in moto, without its state machines (those are what is tested)."""
    mock = aws.start()
    try:
        resources = aws.Resources()
        for logical_id, resource in template.resources().items():
            provisioner = aws.PROVISIONERS.get(resource["Type"])
            if provisioner:
                provisioner(resources, logical_id, resource.get("Properties") or {})
        resources.names["SigningSecret"] = "state-machine-test-secret-0123456789"
        yield resources
    finally:
        mock.stop()


def _machine_for(path: Path) -> template.StateMachine:
    for logical_id, resource in template.resources().items():
        props = resource.get("Properties") or {}
        uri = props.get("DefinitionUri") if resource["Type"] == "AWS::Serverless::StateMachine" else None
        if uri and (template.path().parent / str(uri)).resolve() == path.resolve():
            return next(m for m in template.state_machines() if m.logical_id == logical_id)
    return template.StateMachine(path.stem.replace(".asl", ""), path.read_text(), {}, "STANDARD")


@pytest.mark.parametrize("path", STATE_MACHINE_FILES, ids=lambda path: path.name)
def test_state_machine_definition_loads_in_step_functions(path: Path, emulated_resources: aws.Resources) -> None:
    machine = _machine_for(path)
    definition = aws.definition_for(machine, emulated_resources)
    client = boto3.client("stepfunctions", region_name=aws.REGION)

    created = client.create_state_machine(
        name=f"check-{path.name.removesuffix('.asl.json')}",
        definition=definition,
        roleArn=aws.STATES_ROLE_ARN,
        type=machine.type,
    )

    assert created["stateMachineArn"]
    assert _dangling_transitions(json.loads(definition)) == [], "transitions to states that do not exist"


def _dangling_transitions(machine: dict[str, Any]) -> list[str]:
    """moto accepts a StartAt or Next naming no state; Step Functions does not."""
    states = machine.get("States") or {}
    targets = [("StartAt", machine.get("StartAt"))]
    dangling = []
    for name, state in states.items():
        targets += [(f"{name}.Next", state.get("Next")), (f"{name}.Default", state.get("Default"))]
        targets += [(f"{name}.Choices", choice.get("Next")) for choice in state.get("Choices") or []]
        targets += [(f"{name}.Catch", catcher.get("Next")) for catcher in state.get("Catch") or []]
        for branch in [*(state.get("Branches") or []), state.get("ItemProcessor"), state.get("Iterator")]:
            if branch:
                dangling += [f"{name} > {inner}" for inner in _dangling_transitions(branch)]
    dangling += [f"{where} -> {target}" for where, target in targets if target is not None and target not in states]
    return dangling


def assert_every_module_has_bytecode_that_needs_no_source_check(site: Path) -> None:
    """/opt is read-only in Lambda: a module without bytecode in the layer is compiled on every cold
    start. The bytecode must be hash-based and unchecked (PEP 552 flags 0b01), so the mtimes the zip
    gives the sources cannot make Python ignore it."""
    tag = sys.implementation.cache_tag
    sources = [path for path in site.rglob("*.py") if "-stubs" not in path.parts[-2]]
    assert len(sources) > 500, "the layer's packages were not installed"
    missing = []
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        if not compiled.is_file():
            missing.append(str(source.relative_to(site)))
            continue
        flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{compiled.relative_to(site)} is checked against its source (flags {flags:#b})"
    assert not missing, f"modules without bytecode in the layer: {missing[:10]}"
