"""ADRs, rules and failure records: what a workspace has decided, requires and learned.

ADR numbers come from a per-workspace counter item. Creating an ADR moves the counter from n to
n+1 with a conditional write in the same transaction as the ADR, so concurrent creates never share
a number and never skip one (a loser re-reads the counter and takes the next number).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from pynamodb.expressions.operand import Path

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.knowledge import (
    AdrCounterItem,
    AdrItem,
    FailureItem,
    RuleItem,
    adrs_in_number_order,
    adrs_of_workspace,
    failures_of_workspace,
    rules_of_workspace,
)
from agentplane.entities.runs import RunItem
from agentplane.entities.tasks import TaskItem
from agentplane.errors import Conflict, Forbidden, InvalidTransition, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.models.knowledge import (
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
from agentplane.store import Transaction, TransactionFailed, get_store, retrying

# Concurrent ADR creates retry this often before giving up with a 409.
_COUNTER_ATTEMPTS = 40
# The prompt reads at most this many ADRs, oldest number first.
_PROMPT_MAX_ADRS = 1000
_PROMPT_FIELD_CHARS = 600
_NOT_SUPERSEDED = (AdrStatus.proposed.value, AdrStatus.accepted.value, AdrStatus.deprecated.value)
# Ids as minted (`agentplane.ids.new_id`): anything else names no ADR or rule and is never looked up.
ADR_ID = re.compile(r"^adr_[0-9a-z]{26}$")
RULE_ID = re.compile(r"^rule_[0-9a-z]{26}$")
# The operations of an ADR create that another create (or a change to the ADR it supersedes) can
# win: the loser re-reads and tries again.
_COUNTER, _SUPERSEDED = "counter", "superseded"
# A run carries no deletion mark of its own; a failure may not name one that ever gets one.
_NOT_DELETED = Path("deleted_at").does_not_exist()


# --- ADRs ----------------------------------------------------------------------------------


def _load_adr(ws: str, adr_id: str) -> AdrItem:
    adr = get_store().read(AdrItem, keys.adr_key(ws, adr_id)) if ADR_ID.match(adr_id) else None
    if adr is None:
        raise NotFound(f"ADR {adr_id} not found")
    return adr


def _supersede(tx: Transaction, old: AdrItem, new_id_: str, at: str) -> None:
    """Mark `old` superseded by `new_id_`, provided it is not superseded already."""
    actions = old.relinked(
        status=AdrStatus.superseded.value, superseded_by=new_id_, status_before_superseded=old.status, updated_at=at
    )
    tx.adjust(AdrItem, old.key, actions, AdrItem.status.is_in(*_NOT_SUPERSEDED), name=_SUPERSEDED)


def _lost_a_race(failure: Exception) -> bool:
    """Another create took the number, or the superseded ADR changed, or DynamoDB cancelled the
    transaction because another one touched the same item at once."""
    if not isinstance(failure, TransactionFailed):
        return False
    return failure.failed in (_COUNTER, _SUPERSEDED) or "TransactionConflict" in failure.reasons


def create_adr(access: Access, body: AdrCreate) -> Adr:
    ws = access.workspace_id
    adr_id = new_id("adr")
    fields = body.model_dump(exclude={"author", "supersedes"})
    author = body.author or access.principal.agent_name or access.actor_id

    def take_next_number() -> AdrItem:
        # Each attempt re-reads, so a superseded or deleted ADR is reported as such.
        old = _load_adr(ws, body.supersedes) if body.supersedes else None
        if old is not None and old.status == AdrStatus.superseded:
            raise InvalidTransition(f"ADR {old.id} is already superseded by {old.superseded_by}", old.status)
        counter = get_store().read(AdrCounterItem, keys.adr_counter_key(ws))
        last = int(counter.last_number) if counter else 0
        at = iso()
        adr = AdrItem(
            workspace_id=ws,
            id=adr_id,
            **fields,
            number=last + 1,
            author=author,
            supersedes=body.supersedes,
            created_by=access.actor_id,
            created_at=at,
            updated_at=at,
        )
        tx = access.transaction()
        if counter is None:
            tx.create(AdrCounterItem(workspace_id=ws, last_number=adr.number), name=_COUNTER)
        else:
            numbered = [AdrCounterItem.last_number.set(adr.number)]
            tx.adjust(AdrCounterItem, counter.key, numbered, AdrCounterItem.last_number == last, name=_COUNTER)
        tx.create(adr)
        access.audit(tx, "adr.created", "adr", adr_id, {"number": adr.number, "title": body.title})
        if old is not None:
            _supersede(tx, old, adr_id, at)
            access.audit(tx, "adr.superseded", "adr", old.id, {"by": adr_id})
        access.commit(tx)
        return adr

    try:
        adr = retrying(
            take_next_number, retry_if=_lost_a_race, attempts=_COUNTER_ATTEMPTS, base_delay=0.001, max_delay=0.05
        )
    except TransactionFailed as failure:
        if _lost_a_race(failure):
            raise Conflict("too many ADRs are being created at once; retry") from failure
        raise
    return adr.to_model()


def get_adr(access: Access, adr_id: str) -> Adr:
    return _load_adr(access.workspace_id, adr_id).to_model()


def list_adrs(
    access: Access, *, status: AdrStatus | None, limit: int, cursor: str | None
) -> tuple[list[Adr], str | None]:
    """Highest number first, as Toban lists them."""
    ws = access.workspace_id
    query = {"status": status}
    scope = f"adrs:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = adrs_of_workspace(ws, status=status.value if status else None, limit=limit, start=start)
    return [adr.to_model() for adr in page.items], encode_cursor(page.last_key, scope, query)


def update_adr(access: Access, adr_id: str, body: AdrUpdate, if_match: int | None = None) -> Adr:
    ws = access.workspace_id
    current = _load_adr(ws, adr_id)
    expected = body.version or if_match
    if expected is not None and expected != current.version:
        raise PreconditionFailed(
            f"ADR {adr_id} is at version {current.version}, not {expected}", current_version=current.version
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
        if newer.status == AdrStatus.superseded:
            # Only a standing decision can replace another; this also keeps supersession acyclic.
            raise InvalidTransition(f"ADR {replacement} is itself superseded", newer.status)
        changes["status"] = AdrStatus.superseded.value
        changes["superseded_by"] = replacement
        if current.status != AdrStatus.superseded:
            changes["status_before_superseded"] = current.status
        if not newer.supersedes:
            # Record the link on the newer ADR too, unless it already names another one.
            linked = newer.relinked(supersedes=adr_id, updated_at=at)
            tx.adjust(AdrItem, newer.key, linked, AdrItem.supersedes.does_not_exist())
        else:
            tx.require(AdrItem, newer.key, AdrItem.present())
    elif body.status is AdrStatus.superseded and current.status != AdrStatus.superseded:
        raise Unprocessable(
            "say which ADR supersedes this one",
            errors=[{"field": "superseded_by", "message": "required to mark an ADR superseded"}],
        )
    elif body.status is not None and body.status is not AdrStatus.superseded:
        remove = ["superseded_by", "status_before_superseded"]
    previous = current.superseded_by
    if previous and changes.get("superseded_by", None if remove else previous) != previous:
        # The ADR that superseded this one no longer does: drop its back link if it still points here.
        earlier = get_store().read(AdrItem, keys.adr_key(ws, previous))
        if earlier is not None and earlier.supersedes == adr_id:
            unlinked = earlier.relinked(supersedes=None, updated_at=at)
            tx.adjust(AdrItem, earlier.key, unlinked, AdrItem.supersedes == adr_id)
    fields = sorted(name for name in changes if name != "status_before_superseded")
    tx.change(current, current.assign(**changes, **dict.fromkeys(remove), updated_at=at))
    access.audit(tx, "adr.updated", "adr", adr_id, {"fields": fields})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"ADR {adr_id} or a linked ADR changed while it was being updated; retry") from failure
    return current.to_model()


def delete_adr(access: Access, adr_id: str) -> None:
    """Deletes the ADR (its number is never reused) and undoes its supersession links: an ADR it
    superseded gets its earlier status back."""
    ws = access.workspace_id
    current = _load_adr(ws, adr_id)
    at = iso()
    tx = access.transaction()
    tx.remove(current)
    older_id = current.supersedes
    older = get_store().read(AdrItem, keys.adr_key(ws, older_id)) if older_id else None
    if older is not None and older.superseded_by == adr_id:
        restored = older.relinked(
            status=older.status_before_superseded or AdrStatus.accepted.value,
            superseded_by=None,
            status_before_superseded=None,
            updated_at=at,
        )
        tx.adjust(AdrItem, older.key, restored, AdrItem.superseded_by == adr_id)
    newer_id = current.superseded_by
    newer = get_store().read(AdrItem, keys.adr_key(ws, newer_id)) if newer_id and newer_id != older_id else None
    if newer is not None and newer.supersedes == adr_id:
        tx.adjust(AdrItem, newer.key, newer.relinked(supersedes=None, updated_at=at), AdrItem.supersedes == adr_id)
    access.audit(tx, "adr.deleted", "adr", adr_id, {"number": current.number})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if get_store().read(AdrItem, keys.adr_key(ws, adr_id)) is None:
            raise NotFound(f"ADR {adr_id} not found") from failure
        raise PreconditionFailed(f"ADR {adr_id} or a linked ADR changed while it was being deleted; retry") from failure


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _PROMPT_FIELD_CHARS else text[: _PROMPT_FIELD_CHARS - 1] + "…"


def adr_prompt(access: Access, *, include_proposed: bool = True) -> AdrPrompt:
    """Toban's ADR block for an agent's prompt: accepted decisions, then (by default) proposed ones
    marked as such, in number order."""
    wanted = [AdrStatus.accepted.value] + ([AdrStatus.proposed.value] if include_proposed else [])
    adrs = adrs_in_number_order(access.workspace_id, statuses=wanted, at_most=_PROMPT_MAX_ADRS)
    accepted = [a for a in adrs if a.status == AdrStatus.accepted]
    proposed = [a for a in adrs if a.status == AdrStatus.proposed]
    lines = ["", "### Architecture Decisions (ADR)"]
    if not adrs:
        lines.append("No architecture decisions are recorded yet.")
    for adr in accepted:
        lines += [
            f"- ADR-{int(adr.number):03d}: {_clip(adr.title)}",
            f"  Decision: {_clip(adr.decision)}",
            f"  Rationale: {_clip(adr.rationale)}",
        ]
    if proposed:
        lines += ["", "Proposed (under discussion, not yet binding):"]
        lines += [f"- ADR-{int(adr.number):03d}: {_clip(adr.title)} — {_clip(adr.decision)}" for adr in proposed]
    return AdrPrompt(prompt="\n".join(lines) + "\n", count=len(adrs))


# --- rules ---------------------------------------------------------------------------------


def _load_rule(ws: str, rule_id: str) -> RuleItem:
    rule = get_store().read(RuleItem, keys.rule_key(ws, rule_id)) if RULE_ID.match(rule_id) else None
    if rule is None:
        raise NotFound(f"rule {rule_id} not found")
    return rule


def create_rule(access: Access, body: RuleCreate) -> Rule:
    at = iso()
    rule = RuleItem(
        workspace_id=access.workspace_id,
        id=new_id("rule"),
        **body.model_dump(),
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    tx = access.transaction()
    tx.create(rule)
    details = {"scope": body.scope, "category": body.category, "permanent": body.permanent}
    access.audit(tx, "rule.created", "rule", rule.id, details)
    access.commit(tx)
    return rule.to_model()


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
    page = rules_of_workspace(
        ws,
        scope=scope,
        followed_by=agent,
        category=category,
        permanent=permanent,
        limit=limit,
        start=decode_cursor(cursor, list_scope, query),
    )
    return [rule.to_model() for rule in page.items], encode_cursor(page.last_key, list_scope, query)


def update_rule(access: Access, rule_id: str, body: RuleUpdate, if_match: int | None = None) -> Rule:
    current = _load_rule(access.workspace_id, rule_id)
    expected = body.version or if_match
    if expected is not None and expected != current.version:
        raise PreconditionFailed(
            f"rule {rule_id} is at version {current.version}, not {expected}", current_version=current.version
        )
    if current.permanent and body.permanent is False:
        # Making a permanent rule deletable is the one change members may not make.
        access.require("admin")
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"version"})
    tx = access.transaction()
    tx.change(current, current.assign(**changes, updated_at=iso()))
    access.audit(tx, "rule.updated", "rule", rule_id, {"fields": sorted(changes)})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"rule {rule_id} changed while it was being updated; reload and retry") from failure
    return current.to_model()


def delete_rule(access: Access, rule_id: str) -> None:
    """Permanent rules refuse deletion with 403; the check is part of the delete's condition, so a
    rule made permanent a moment ago is not deleted either."""
    ws = access.workspace_id
    current = _load_rule(ws, rule_id)
    if current.permanent:
        raise Forbidden(f"rule {rule_id} is permanent and cannot be deleted")
    tx = access.transaction()
    tx.drop(RuleItem, current.key, RuleItem.permanent == False)  # noqa: E712 - a condition, not a test
    access.audit(tx, "rule.deleted", "rule", rule_id, {"scope": current.scope})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if get_store().read(RuleItem, current.key) is None:
            raise NotFound(f"rule {rule_id} not found") from failure
        raise Forbidden(f"rule {rule_id} is permanent and cannot be deleted") from failure


# --- failures ------------------------------------------------------------------------------


def add_failure_writes(
    tx: Transaction, access: Access, body: FailureCreate, request_id: str = "", *, source: str = "reported"
) -> FailureItem:
    """Put a failure record and its audit row into `tx` (a rejected task records its failure in the
    rejection's own transaction); returns the record as stored. `request_id` names the request on
    the audit row when the caller's access does not carry it."""
    failure = FailureItem(
        workspace_id=access.workspace_id,
        id=new_id("fail"),
        **body.model_dump(),
        source=source,
        created_by=access.actor_id,
        created_at=iso(),
    )
    failure.agent = body.agent or access.principal.agent_name
    tx.create(failure)
    recorder = replace(access, request_id=request_id) if request_id else access
    details = {"title": body.title, "task_id": body.task_id, "source": source}
    recorder.audit(tx, "failure.recorded", "failure", failure.id, details)
    return failure


def record_failure(access: Access, body: FailureCreate) -> FailureRecord:
    """Record a failure; the task and run it names must be this workspace's (checked in the write)."""
    ws = access.workspace_id
    tx = access.transaction()
    references = {field: value for field, value in (("task_id", body.task_id), ("run_id", body.run_id)) if value}
    for field, value in references.items():
        # Tasks and runs are other families' items: the check reads only their key and deletion mark.
        if field == "task_id":
            tx.require(TaskItem, keys.task_key(ws, value), TaskItem.present() & TaskItem.live(), name=field)
        else:
            tx.require(RunItem, keys.run_key(ws, value), RunItem.present() & _NOT_DELETED, name=field)
    failure = add_failure_writes(tx, access, body)
    try:
        access.commit(tx)
    except TransactionFailed as refused:
        if refused.failed in references:
            field = refused.failed
            raise Unprocessable(
                f"{field} {references[field]} names nothing in this workspace", field=field
            ) from refused
        raise
    return failure.to_model()


def list_failures(
    access: Access, *, agent: str | None, task_id: str | None, limit: int, cursor: str | None
) -> tuple[list[FailureRecord], str | None]:
    """Newest first."""
    ws = access.workspace_id
    query = {"agent": agent, "task_id": task_id}
    scope = f"failures:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = failures_of_workspace(ws, agent=agent, task_id=task_id, limit=limit, start=start)
    return [failure.to_model() for failure in page.items], encode_cursor(page.last_key, scope, query)
