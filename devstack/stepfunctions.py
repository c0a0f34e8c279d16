"""Step Functions, locally: the template's state machines created in moto (which really executes
ASL), with `arn:aws:states:::lambda:invoke` tasks running the real handlers in-process.

moto's Lambda without Docker only echoes payloads; the bridge here replaces its invoke so any
Lambda Invoke (from a state machine, or a function calling lambda.invoke) runs the template's
function. Waits are real time; `wait_override` lets tests shorten them.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import boto3

from devstack import aws, template
from devstack.lambdas import Lambdas

log = logging.getLogger("devstack.stepfunctions")

ROLE_ARN = f"arn:aws:iam::{aws.ACCOUNT}:role/agentplane-local-states"


def definition_for(machine: template.StateMachine, resources: aws.Resources) -> str:
    """The ASL with its DefinitionSubstitutions resolved against the local resources."""
    values = {name: aws.resolve(value, resources) for name, value in machine.substitutions.items()}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return values[name] if name in values else match.group(0)

    return re.sub(r"\$\{([^}]+)\}", replace, machine.definition)


def create_state_machines(resources: aws.Resources) -> None:
    client = boto3.client("stepfunctions", region_name=aws.REGION)
    for machine in template.state_machines():
        created = client.create_state_machine(
            name=machine.name,
            definition=definition_for(machine, resources),
            roleArn=ROLE_ARN,
            type=machine.type,
        )
        arn = created["stateMachineArn"]
        resources.names[machine.logical_id] = arn  # Ref of a state machine is its ARN
        resources.arns[machine.logical_id] = arn
        resources.arns[f"{machine.logical_id}.Name"] = machine.name


# ---------------------------------------------------------------- Lambda Invoke → real handlers

_installed: dict[str, Any] = {}


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _error_payload(exc: BaseException) -> bytes:
    # The shape Lambda returns for an unhandled error; Step Functions' Catch matches errorType.
    return json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
    ).encode()


def install_lambda_bridge(lambdas: Lambdas) -> None:
    """Make moto's Lambda Invoke run the template's functions in-process."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    uninstall_lambda_bridge()
    original = LambdaSimpleBackend.invoke
    background = ThreadPoolExecutor(8, thread_name_prefix="lambda-event")

    def invoke(self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any) -> Any:
        function = lambdas.find(function_name)
        if function is None:
            return original(self, function_name, qualifier, body, headers, response_headers)
        event = json.loads(body) if body else {}
        invocation_type = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            background.submit(_run_async, lambdas, function, event)
            return b""
        try:
            result = lambdas.invoke(function, event)
        except Exception as exc:
            log.warning("%s raised %s during a Lambda Invoke", function.logical_id, type(exc).__name__)
            response_headers["x-amz-function-error"] = "Unhandled"
            return _error_payload(exc)
        return json.dumps(result).encode()

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    _installed.update(original=original, background=background)


def _run_async(lambdas: Lambdas, function: template.Function, event: Any) -> None:
    try:
        lambdas.invoke(function, event)
    except Exception:
        log.exception("%s failed on an asynchronous invoke", function.logical_id)


def uninstall_lambda_bridge() -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend

    if "original" in _installed:
        LambdaSimpleBackend.invoke = _installed["original"]  # type: ignore[method-assign]
        _installed["background"].shutdown(wait=False, cancel_futures=True)
        _installed.clear()


# ---------------------------------------------------------------- Wait states

_wait_override: list[Callable[[int], float]] = []
_wait_patched: dict[str, Any] = {}


def _patch_wait() -> None:
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    if _wait_patched:
        return
    original = WaitFunction._wait_interval

    def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if not _wait_override:
            return original(self, env, wait_seconds)
        deadline = time.monotonic() + max(0.0, _wait_override[-1](wait_seconds))
        while env.is_running():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            env.program_state_event.wait(min(left, 0.05))
        return None

    WaitFunction._wait_interval = wait_interval  # type: ignore[method-assign]
    _wait_patched["original"] = original


@contextmanager
def wait_override(seconds: Callable[[int], float] | float = 0) -> Iterator[None]:
    """Within the block, a Wait state of N seconds lasts `seconds(N)` (or a fixed number)."""
    _patch_wait()
    rule = seconds if callable(seconds) else (lambda _n: float(seconds))
    _wait_override.append(rule)
    try:
        yield
    finally:
        _wait_override.pop()
