"""What applies and destroys leave behind: a capsule's state versions (one per serial, newest
first) and the outputs of its current state.

Outputs are kept on the capsule, as the last apply wrote them: a sensitive value sealed
(`crypto.seal`), any other in the clear. Listing them shows sensitive values as null; the value
itself comes only from the output's own route, to a holder of `deploy:apply`, and that read is
audited (never with the value).
"""

from __future__ import annotations

import json
from typing import Any

from agentplane import crypto
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.deploy import state_versions_of_capsule
from agentplane.errors import NotFound
from agentplane.logic.deploy import capsules
from agentplane.models.deploy import DeployOutput, RevealedOutput, StateVersion


def list_state_versions(
    access: Access, capsule_id: str, *, limit: int, cursor: str | None
) -> tuple[list[StateVersion], str | None]:
    """Newest serial first; an unknown capsule is a 404, not an empty list."""
    ws = access.workspace_id
    capsules.load(ws, capsule_id)
    scope = f"state_versions:{ws}:{capsule_id}"
    page = state_versions_of_capsule(ws, capsule_id, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [version.to_model() for version in page.items], encode_cursor(page.last_key, scope, {})


def list_outputs(
    access: Access, capsule_id: str, *, limit: int, cursor: str | None
) -> tuple[list[DeployOutput], str | None]:
    """The current state's outputs by name, sensitive values null. They are all held by the
    capsule, so a page is cut from what one read answers; the cursor carries the last name."""
    ws = access.workspace_id
    shown = capsules.load(ws, capsule_id).shown_outputs()
    scope = f"outputs:{ws}:{capsule_id}"
    start = decode_cursor(cursor, scope, {})
    after = str(start["name"]) if start else None
    remaining = [output for output in shown if after is None or output.name > after]
    page = remaining[:limit]
    last = {"name": page[-1].name} if len(remaining) > limit else None
    return page, encode_cursor(last, scope, {})


def reveal_output(access: Access, capsule_id: str, name: str) -> RevealedOutput:
    """One output with its value; a sensitive value is unsealed, and its reading audited."""
    ws = access.workspace_id
    capsule = capsules.load(ws, capsule_id)
    output: dict[str, Any] | None = (capsule.outputs or {}).get(name)
    if output is None:
        raise NotFound(f"capsule {capsule_id} has no output {name}")
    sensitive = bool(output.get("sensitive"))
    if sensitive:
        value = json.loads(crypto.unseal(output["sealed"], ws))
        tx = access.transaction()
        access.audit(tx, "deploy.output_revealed", "capsule", capsule_id, {"capsule_id": capsule_id, "output": name})
        access.commit(tx)
    else:
        value = output.get("value")
    return RevealedOutput(
        name=name,
        value=value,
        sensitive=sensitive,
        serial=int(capsule.state_serial or 0),
        run_id=str(capsule.state_run_id or ""),
    )
