"""ADRs, rules and failure records: what a workspace has decided, requires and learned.

ADR numbers come from a per-workspace counter item. Creating an ADR moves the counter from n to
n+1 with a conditional write in the same transaction as the ADR, so concurrent creates never share
a number and never skip one (a loser re-reads the counter and takes the next number).
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, Forbidden, InvalidTransition, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.models.knowledge import (
    UNIVERSAL_SCOPE,
    Adr,
    AdrCreate,
    AdrPrompt,
    AdrStatus,
    AdrUpdate,
    FailureCreate,
    FailureRecord,
    Rule,
    RuleCreate,
    RuleUpdate,
)
from agentplane.store import Expr, Transaction, TransactionFailed, Update, attr_eq, attr_in, exists, get_store

# Concurrent ADR creates retry this often before giving up with a 409.
_COUNTER_ATTEMPTS = 40
# The prompt reads at most this many ADRs (pages of 200), oldest number first.
_PROMPT_MAX_ADRS = 1000
_PROMPT_FIELD_CHARS = 600
_NOT_SUPERSEDED = (AdrStatus.proposed.value, AdrStatus.accepted.value, AdrStatus.deprecated.value)
# Ids as minted (`agentplane.ids.new_id`): anything else names no ADR or rule and is never looked up.
ADR_ID = re.compile(r"^adr_[0-9a-z]{26}$")
RULE_ID = re.compile(r"^rule_[0-9a-z]{26}$")


def _pause_before_retry(attempt: int) -> None:
    # Jitter only, so colliding writers spread out; not a security use of randomness.
    time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311


def _conflicted(failure: TransactionFailed) -> bool:
    """DynamoDB cancelled the transaction because another one touched the same item at once."""
    return "TransactionConflict" in failure.reasons


# --- ADRs ----------------------------------------------------------------------------------


def _to_adr(item: dict[str, Any]) -> Adr:
    return Adr.model_validate(item)


def _load_adr(ws: str, adr_id: str) -> dict[str, Any]:
    item = get_store().get(keys.adr_key(ws, adr_id)) if ADR_ID.match(adr_id) else None
    if item is None:
        raise NotFound(f"ADR {adr_id} not found")
    return item


def _supersede(tx: Transaction, ws: str, old: dict[str, Any], new_id_: str, at: str) -> None:
    """Mark `old` superseded by `new_id_`, provided it is not superseded already."""
    tx.update(
        keys.adr_key(ws, old["id"]),
        Update(
            set={
                "status": AdrStatus.superseded.value,
                "superseded_by": new_id_,
                "status_before_superseded": old["status"],
                "updated_at": at,
            },
            add={"version": 1},
        ),
        exists() & attr_in("status", _NOT_SUPERSEDED),
    )


def create_adr(access: Access, body: AdrCreate, request_id: str = "") -> Adr:
    ws = access.workspace_id
    adr_id = new_id("adr")
    fields = body.model_dump(exclude={"author", "supersedes"})
    author = body.author or access.principal.agent_name or access.actor_id
    for attempt in range(_COUNTER_ATTEMPTS):
        old = _load_adr(ws, body.supersedes) if body.supersedes else None
        if old is not None and old["status"] == AdrStatus.superseded:
            raise InvalidTransition(
                f"ADR {old['id']} is already superseded by {old.get('superseded_by')}", old["status"]
            )
        counter = get_store().get(keys.adr_counter_key(ws))
        last = int(counter["last_number"]) if counter else 0
        number = last + 1
        at = iso()
        item = {
            **keys.adr_key(ws, adr_id),
            keys.ENTITY: "adr",
            keys.GSI1PK: keys.adr_list_gsi(ws),
            keys.GSI1SK: f"{number:010d}",
            **fields,
            "id": adr_id,
            "workspace_id": ws,
            "number": number,
            "author": author,
            "supersedes": body.supersedes,
            "created_by": access.actor_id,
            "created_at": at,
            "updated_at": at,
            "version": 1,
        }
        tx = access.transaction()
        counter_index = len(tx.operations)
        if counter is None:
            tx.put(
                {**keys.adr_counter_key(ws), keys.ENTITY: "counter", "last_number": number},
                Expr("attribute_not_exists(PK)"),
            )
        else:
            tx.update(keys.adr_counter_key(ws), Update(set={"last_number": number}), attr_eq("last_number", last))
        tx.put(item, Expr("attribute_not_exists(PK)"))
        audit.record(
            tx, ws, access.actor_id, "adr.created", "adr", adr_id, request_id, {"number": number, "title": body.title}
        )
        supersede_index = len(tx.operations)
        if old is not None:
            _supersede(tx, ws, old, adr_id, at)
            audit.record(tx, ws, access.actor_id, "adr.superseded", "adr", old["id"], request_id, {"by": adr_id})
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            lost = failure.failed_index()
            if lost == counter_index or _conflicted(failure) or (old is not None and lost == supersede_index):
                # Another create took this number, or the superseded ADR changed: re-read and retry
                # (the next pass reports a superseded or deleted ADR as such).
                _pause_before_retry(attempt)
                continue
            raise
        return _to_adr(item)
    raise Conflict("too many ADRs are being created at once; retry")


def get_adr(access: Access, adr_id: str) -> Adr:
    return _to_adr(_load_adr(access.workspace_id, adr_id))


def list_adrs(
    access: Access, *, status: AdrStatus | None, limit: int, cursor: str | None
) -> tuple[list[Adr], str | None]:
    """Highest number first, as Toban lists them."""
    ws = access.workspace_id
    query = {"status": status}
    scope = f"adrs:{ws}"
    page = get_store().query(
        keys.adr_list_gsi(ws),
        index=keys.GSI1,
        limit=limit,
        start_key=decode_cursor(cursor, scope, query),
        newest_first=True,
        filter=attr_eq("status", status.value) if status else None,
    )
    return [_to_adr(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def update_adr(access: Access, adr_id: str, body: AdrUpdate, if_match: int | None = None, request_id: str = "") -> Adr:
    ws = access.workspace_id
    current = _load_adr(ws, adr_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"ADR {adr_id} is at version {current['version']}, not {expected}", current_version=current["version"]
        )
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"version", "superseded_by"})
    remove: list[str] = []
    at = iso()
    tx = access.transaction()
    replacement = body.superseded_by
    if replacement is not None:
        if body.status not in (None, AdrStatus.superseded):
            raise Unprocessable(
                "an ADR with `superseded_by` is superseded",
                errors=[{"field": "status", "message": "must be 'superseded' or omitted with superseded_by"}],
            )
        if replacement == adr_id:
            raise Unprocessable(
                "an ADR cannot supersede itself", errors=[{"field": "superseded_by", "message": "is this ADR"}]
            )
        newer = _load_adr(ws, replacement)
        if newer["status"] == AdrStatus.superseded:
            # Only a standing decision can replace another; this also keeps supersession acyclic.
            raise InvalidTransition(f"ADR {replacement} is itself superseded", newer["status"])
        changes["status"] = AdrStatus.superseded.value
        changes["superseded_by"] = replacement
        if current["status"] != AdrStatus.superseded:
            changes["status_before_superseded"] = current["status"]
        if not newer.get("supersedes"):
            # Record the link on the newer ADR too, unless it already names another one.
            tx.update(
                keys.adr_key(ws, replacement),
                Update(set={"supersedes": adr_id, "updated_at": at}, add={"version": 1}),
                exists() & Expr("attribute_not_exists(supersedes)"),
            )
        else:
            tx.check(keys.adr_key(ws, replacement), exists())
    elif body.status is AdrStatus.superseded and current["status"] != AdrStatus.superseded:
        raise Unprocessable(
            "say which ADR supersedes this one",
            errors=[{"field": "superseded_by", "message": "required to mark an ADR superseded"}],
        )
    elif body.status is not None and body.status is not AdrStatus.superseded:
        remove = ["superseded_by", "status_before_superseded"]
    previous = current.get("superseded_by")
    if previous and changes.get("superseded_by", None if remove else previous) != previous:
        # The ADR that superseded this one no longer does: drop its back link if it still points here.
        earlier = get_store().get(keys.adr_key(ws, previous))
        if earlier is not None and earlier.get("supersedes") == adr_id:
            tx.update(
                keys.adr_key(ws, previous),
                Update(set={"updated_at": at}, remove=["supersedes"], add={"version": 1}),
                attr_eq("supersedes", adr_id),
            )
    changes["updated_at"] = at
    changes["version"] = current["version"] + 1
    tx.update(
        keys.adr_key(ws, adr_id),
        Update(set=changes, remove=remove),
        exists() & attr_eq("version", current["version"]),
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "adr.updated",
        "adr",
        adr_id,
        request_id,
        {"fields": sorted(k for k in changes if k not in ("updated_at", "version", "status_before_superseded"))},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"ADR {adr_id} or a linked ADR changed while it was being updated; retry") from failure
    result = {**current, **changes}
    for name in remove:
        result.pop(name, None)
    return _to_adr(result)


def delete_adr(access: Access, adr_id: str, request_id: str = "") -> None:
    """Deletes the ADR (its number is never reused) and undoes its supersession links: an ADR it
    superseded gets its earlier status back."""
    ws = access.workspace_id
    current = _load_adr(ws, adr_id)
    at = iso()
    tx = access.transaction()
    tx.delete(keys.adr_key(ws, adr_id), exists() & attr_eq("version", current["version"]))
    older_id = current.get("supersedes")
    older = get_store().get(keys.adr_key(ws, older_id)) if older_id else None
    if older is not None and older.get("superseded_by") == adr_id:
        tx.update(
            keys.adr_key(ws, older["id"]),
            Update(
                set={"status": older.get("status_before_superseded", AdrStatus.accepted.value), "updated_at": at},
                remove=["superseded_by", "status_before_superseded"],
                add={"version": 1},
            ),
            attr_eq("superseded_by", adr_id),
        )
    newer_id = current.get("superseded_by")
    newer = get_store().get(keys.adr_key(ws, newer_id)) if newer_id and newer_id != older_id else None
    if newer is not None and newer.get("supersedes") == adr_id:
        tx.update(
            keys.adr_key(ws, newer["id"]),
            Update(set={"updated_at": at}, remove=["supersedes"], add={"version": 1}),
            attr_eq("supersedes", adr_id),
        )
    audit.record(tx, ws, access.actor_id, "adr.deleted", "adr", adr_id, request_id, {"number": current["number"]})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if get_store().get(keys.adr_key(ws, adr_id)) is None:
            raise NotFound(f"ADR {adr_id} not found") from failure
        raise PreconditionFailed(f"ADR {adr_id} or a linked ADR changed while it was being deleted; retry") from failure


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _PROMPT_FIELD_CHARS else text[: _PROMPT_FIELD_CHARS - 1] + "…"


def adr_prompt(access: Access, *, include_proposed: bool = True) -> AdrPrompt:
    """Toban's ADR block for an agent's prompt: accepted decisions, then (by default) proposed ones
    marked as such, in number order."""
    ws = access.workspace_id
    wanted = [AdrStatus.accepted.value] + ([AdrStatus.proposed.value] if include_proposed else [])
    adrs: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    read = 0
    while read < _PROMPT_MAX_ADRS:
        page = get_store().query(
            keys.adr_list_gsi(ws), index=keys.GSI1, limit=200, start_key=start, filter=attr_in("status", wanted)
        )
        adrs += page.items
        read += 200
        start = page.last_key
        if not start:
            break
    accepted = [a for a in adrs if a["status"] == AdrStatus.accepted]
    proposed = [a for a in adrs if a["status"] == AdrStatus.proposed]
    lines = ["", "### Architecture Decisions (ADR)"]
    if not adrs:
        lines.append("No architecture decisions are recorded yet.")
    for adr in accepted:
        lines += [
            f"- ADR-{adr['number']:03d}: {_clip(adr['title'])}",
            f"  Decision: {_clip(adr['decision'])}",
            f"  Rationale: {_clip(adr['rationale'])}",
        ]
    if proposed:
        lines += ["", "Proposed (under discussion, not yet binding):"]
        lines += [f"- ADR-{adr['number']:03d}: {_clip(adr['title'])} — {_clip(adr['decision'])}" for adr in proposed]
    return AdrPrompt(prompt="\n".join(lines) + "\n", count=len(adrs))


# --- rules ---------------------------------------------------------------------------------


def _to_rule(item: dict[str, Any]) -> Rule:
    return Rule.model_validate(item)


def _load_rule(ws: str, rule_id: str) -> dict[str, Any]:
    item = get_store().get(keys.rule_key(ws, rule_id)) if RULE_ID.match(rule_id) else None
    if item is None:
        raise NotFound(f"rule {rule_id} not found")
    return item


def create_rule(access: Access, body: RuleCreate, request_id: str = "") -> Rule:
    ws = access.workspace_id
    rule_id = new_id("rule")
    at = iso()
    item = {
        **keys.rule_key(ws, rule_id),
        keys.ENTITY: "rule",
        keys.GSI1PK: keys.rule_list_gsi(ws),
        keys.GSI1SK: rule_id,
        **body.model_dump(),
        "id": rule_id,
        "workspace_id": ws,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    tx = access.transaction()
    tx.put(item, Expr("attribute_not_exists(PK)"))
    audit.record(
        tx,
        ws,
        access.actor_id,
        "rule.created",
        "rule",
        rule_id,
        request_id,
        {"scope": body.scope, "category": body.category, "permanent": body.permanent},
    )
    access.commit(tx)
    return _to_rule(item)


def list_rules(
    access: Access,
    *,
    scope: str | None,
    agent: str | None,
    category: str | None,
    permanent: bool | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Rule], str | None]:
    """Oldest first. `agent` gives the rules that agent follows: its own and the universal ones."""
    ws = access.workspace_id
    query = {"scope": scope, "agent": agent, "category": category, "permanent": permanent}
    list_scope = f"rules:{ws}"
    filters: list[Expr] = []
    if scope is not None:
        filters.append(attr_eq("scope", scope))
    if agent is not None:
        filters.append(attr_in("scope", [agent, UNIVERSAL_SCOPE]))
    if category is not None:
        filters.append(attr_eq("category", category))
    if permanent is not None:
        filters.append(attr_eq("permanent", permanent))
    condition: Expr | None = None
    for expr in filters:
        condition = expr if condition is None else condition & expr
    page = get_store().query(
        keys.rule_list_gsi(ws),
        index=keys.GSI1,
        limit=limit,
        start_key=decode_cursor(cursor, list_scope, query),
        filter=condition,
    )
    return [_to_rule(item) for item in page.items], encode_cursor(page.last_key, list_scope, query)


def update_rule(
    access: Access, rule_id: str, body: RuleUpdate, if_match: int | None = None, request_id: str = ""
) -> Rule:
    ws = access.workspace_id
    current = _load_rule(ws, rule_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"rule {rule_id} is at version {current['version']}, not {expected}", current_version=current["version"]
        )
    if current.get("permanent") and body.permanent is False:
        # Making a permanent rule deletable is the one change members may not make.
        access.require("admin")
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"version"})
    changes["updated_at"] = iso()
    changes["version"] = current["version"] + 1
    tx = access.transaction()
    tx.update(keys.rule_key(ws, rule_id), Update(set=changes), exists() & attr_eq("version", current["version"]))
    audit.record(
        tx,
        ws,
        access.actor_id,
        "rule.updated",
        "rule",
        rule_id,
        request_id,
        {"fields": sorted(k for k in changes if k not in ("updated_at", "version"))},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"rule {rule_id} changed while it was being updated; reload and retry") from failure
    return _to_rule({**current, **changes})


def delete_rule(access: Access, rule_id: str, request_id: str = "") -> None:
    """Permanent rules refuse deletion with 403; the check is part of the delete's condition, so a
    rule made permanent a moment ago is not deleted either."""
    ws = access.workspace_id
    current = _load_rule(ws, rule_id)
    if current.get("permanent"):
        raise Forbidden(f"rule {rule_id} is permanent and cannot be deleted")
    tx = access.transaction()
    tx.delete(keys.rule_key(ws, rule_id), exists() & attr_eq("permanent", False))
    audit.record(tx, ws, access.actor_id, "rule.deleted", "rule", rule_id, request_id, {"scope": current["scope"]})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        now_stored = get_store().get(keys.rule_key(ws, rule_id))
        if now_stored is None:
            raise NotFound(f"rule {rule_id} not found") from failure
        raise Forbidden(f"rule {rule_id} is permanent and cannot be deleted") from failure


# --- failures ------------------------------------------------------------------------------


def _to_failure(item: dict[str, Any]) -> FailureRecord:
    return FailureRecord.model_validate(item)


def add_failure_writes(
    tx: Transaction, access: Access, body: FailureCreate, request_id: str = "", *, source: str = "reported"
) -> dict[str, Any]:
    """Put a failure record and its audit row into `tx` (a rejected task records its failure in the
    rejection's own transaction); returns the record as stored."""
    ws = access.workspace_id
    failure_id = new_id("fail")
    item = {
        **keys.failure_key(ws, failure_id),
        keys.ENTITY: "failure",
        keys.GSI1PK: keys.failure_list_gsi(ws),
        keys.GSI1SK: failure_id,
        **body.model_dump(),
        "id": failure_id,
        "workspace_id": ws,
        "agent": body.agent or access.principal.agent_name,
        "source": source,
        "created_by": access.actor_id,
        "created_at": iso(),
    }
    tx.put(item, Expr("attribute_not_exists(PK)"))
    audit.record(
        tx,
        ws,
        access.actor_id,
        "failure.recorded",
        "failure",
        failure_id,
        request_id,
        {"title": body.title, "task_id": body.task_id, "source": source},
    )
    return item


def record_failure(access: Access, body: FailureCreate, request_id: str = "") -> FailureRecord:
    """Record a failure; the task and run it names must be this workspace's (checked in the write)."""
    ws = access.workspace_id
    tx = access.transaction()
    references = [(f, v) for f, v in (("task_id", body.task_id), ("run_id", body.run_id)) if v is not None]
    for field, value in references:
        key = keys.task_key(ws, value) if field == "task_id" else keys.run_key(ws, value)
        tx.check(key, exists() & Expr("attribute_not_exists(deleted_at)"))
    first_reference = len(tx.operations) - len(references)
    item = add_failure_writes(tx, access, body, request_id)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        index = failure.failed_index()
        if index is not None and first_reference <= index < first_reference + len(references):
            field, value = references[index - first_reference]
            raise Unprocessable(f"{field} {value} names nothing in this workspace", field=field) from failure
        raise
    return _to_failure(item)


def list_failures(
    access: Access, *, agent: str | None, task_id: str | None, limit: int, cursor: str | None
) -> tuple[list[FailureRecord], str | None]:
    """Newest first."""
    ws = access.workspace_id
    query = {"agent": agent, "task_id": task_id}
    scope = f"failures:{ws}"
    filters = [attr_eq(name, value) for name, value in (("agent", agent), ("task_id", task_id)) if value is not None]
    condition: Expr | None = None
    for expr in filters:
        condition = expr if condition is None else condition & expr
    page = get_store().query(
        keys.failure_list_gsi(ws),
        index=keys.GSI1,
        limit=limit,
        start_key=decode_cursor(cursor, scope, query),
        newest_first=True,
        filter=condition,
    )
    return [_to_failure(item) for item in page.items], encode_cursor(page.last_key, scope, query)
