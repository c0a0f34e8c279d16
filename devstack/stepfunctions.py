"""Step Functions, locally: the template's state machines created in moto (which really executes
ASL), with `arn:aws:states:::lambda:invoke` tasks running the real handlers in-process.

moto's Lambda without Docker only echoes payloads; the bridge here replaces its invoke so any
Lambda Invoke (from a state machine, or a function calling lambda.invoke) runs the template's
function. Waits are real time; `wait_override` lets tests shorten them.

Two fixes to moto's callback tasks are installed with the bridge (see `_patch_early_callbacks`),
and `end_running_executions` stops whatever is still waiting when an emulation goes away.
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
    client = aws.client("stepfunctions")
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
    _patch_early_callbacks()
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


# ---------------------------------------------------------------- callback tasks


def _patch_early_callbacks() -> None:
    """A task token resolved before its heartbeat wait exists must still end the wait.

    moto registers a waitForTaskToken callback before invoking the task's Lambda, so an answer
    (SendTaskSuccess/Failure) may arrive while the Lambda runs: moto stores it, but creates the
    heartbeat waiter only after the Lambda returns, and that new waiter then sleeps for the whole
    heartbeat timeout and reports a timeout over the stored answer. Real Step Functions uses the
    stored answer. So a waiter created once an answer (or an interruption) is in is woken at once.
    """
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    setup = CallbackEndpoint.setup_heartbeat_endpoint
    if getattr(setup, "_wakes_on_stored_outcome", False):
        return

    def setup_heartbeat_endpoint(self: Any, heartbeat_seconds: int) -> Any:
        endpoint = setup(self, heartbeat_seconds)
        # notify() stores the outcome, sets the event, then pokes a waiter if one exists; checking
        # after the waiter is in place means one of the two always sees the other.
        if self._notify_event.is_set():
            endpoint.notify()
        return endpoint

    setup_heartbeat_endpoint._wakes_on_stored_outcome = True  # type: ignore[attr-defined]
    CallbackEndpoint.setup_heartbeat_endpoint = setup_heartbeat_endpoint  # type: ignore[method-assign]


def end_running_executions(timeout: float = 5.0) -> list[str]:
    """End every execution still running, so no thread of it outlives the emulation (a queue wait
    of an hour would otherwise fire into whatever runs next). An execution waiting on a task token
    nobody has answered is aborted and its wait woken; one that is only finishing (its waits all
    answered, its final bookkeeping under way) is left to finish. Returns the ARNs of the aborted."""
    from moto.core.utils import utcnow
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    def running() -> list[Any]:
        found = []
        for account in list(stepfunctions_parser_backends):
            for region in list(stepfunctions_parser_backends[account]):
                for machine in list(stepfunctions_parser_backends[account][region].state_machines):
                    found += [
                        e for e in list(machine.executions)
                        if e.exec_status == ExecutionStatus.RUNNING and getattr(e, "exec_worker", None)
                    ]  # fmt: skip
        return found

    def abort(execution: Any) -> None:
        execution.stop(stop_date=utcnow(), error="States.Aborted", cause="the emulation is shutting down")
        for endpoint in list(execution.exec_worker.env.callback_pool_manager._pool.values()):
            endpoint.interrupt_all()

    aborted: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while (still := running()) and time.monotonic() < deadline:
        for execution in still:
            if execution.exec_worker.env is None:
                continue  # its thread has not built its environment yet: look again next round
            pool = execution.exec_worker.env.callback_pool_manager._pool.values()
            waiting = any(endpoint.get_outcome() is None for endpoint in list(pool))
            if (waiting or time.monotonic() > deadline - 1) and execution.exec_arn not in aborted:
                abort(execution)
                aborted[execution.exec_arn] = execution
        time.sleep(0.02)
    for execution in running():
        log.warning("execution %s did not end within %.0fs", execution.exec_arn, timeout)
    return [str(arn) for arn in aborted]


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
