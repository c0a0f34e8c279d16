"""Step Functions, locally: the template's state machines run in moto (which really executes ASL;
devstack.aws creates them), with `arn:aws:states:::lambda:invoke` tasks running the real handlers
in-process.

moto's Lambda without Docker only echoes payloads; the bridge here answers its invoke (through
devstack.patches) so any Lambda Invoke (from a state machine, or a function calling lambda.invoke)
runs the template's function. Waits are real time; `wait_override` lets tests shorten them.
`end_running_executions` stops whatever is still waiting when an emulation goes away.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from devstack import patches, template
from devstack.lambdas import Lambdas

log = logging.getLogger("devstack.stepfunctions")


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
    uninstall_lambda_bridge()
    background = ThreadPoolExecutor(8, thread_name_prefix="lambda-event")

    def invoke(function_name: str, body: Any, headers: Any, response_headers: Any) -> bytes | None:
        function = lambdas.find(function_name)
        if function is None:
            return None  # not the template's: moto answers
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

    patches.run_lambda_invokes(invoke)
    _installed.update(background=background)


def _run_async(lambdas: Lambdas, function: template.Function, event: Any) -> None:
    try:
        lambdas.invoke(function, event)
    except Exception:
        log.exception("%s failed on an asynchronous invoke", function.logical_id)


def uninstall_lambda_bridge() -> None:
    if "background" in _installed:
        patches.run_lambda_invokes(None)
        _installed["background"].shutdown(wait=False, cancel_futures=True)
        _installed.clear()


def end_running_executions(timeout: float = 5.0) -> list[str]:
    """End every execution still running, so no thread of it outlives the emulation (a queue wait
    of an hour would otherwise fire into whatever runs next). An execution waiting on a task token
    nobody has answered is aborted and its wait woken; one that is only finishing (its waits all
    answered, its final bookkeeping under way) is left to finish. Returns the ARNs of the aborted."""
    from moto.core.utils import utcnow
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    def running() -> list[Any]:
        found: list[Any] = []  # the parser's executions, which moto's own model does not describe
        for account in list(stepfunctions_parser_backends):
            for region in list(stepfunctions_parser_backends[account]):
                for machine in list(stepfunctions_parser_backends[account][region].state_machines):
                    executions: list[Any] = list(machine.executions)
                    found += [
                        e for e in executions
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


@contextmanager
def wait_override(seconds: Callable[[int], float] | float = 0) -> Iterator[None]:
    """Within the block, a Wait state of N seconds lasts `seconds(N)` (or a fixed number)."""
    rule = seconds if callable(seconds) else (lambda _n: float(seconds))
    with patches.waits_lasting(rule):
        yield
