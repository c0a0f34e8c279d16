"""Threads, their ordered messages and public shares; team messages by channel.

A thread's messages are numbered 1, 2, 3… by a counter on the thread item: each post moves the
counter from n to n+1 with a conditional write in the same transaction as the message, so two
concurrent posts can never take the same number (the loser re-reads and takes the next one).
"""

from __future__ import annotations

import random
import re
import time
from datetime import timedelta
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.auth import tokens
from agentplane.auth.secrets import hash_secret, new_secret, secret_hint
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, InvalidTransition, NotFound, PreconditionFailed
from agentplane.ids import epoch, iso, new_id, now
from agentplane.models.threads import (
    SHARE_ID_PATTERN,
    THREAD_ID_PATTERN,
    CreatedThreadShare,
    MessageMode,
    SharedThreadView,
    TeamMessage,
    TeamMessageCreate,
    Thread,
    ThreadCreate,
    ThreadMessage,
    ThreadMessageCreate,
    ThreadShare,
    ThreadShareCreate,
    ThreadStatus,
    ThreadUpdate,
)
from agentplane.store import Expr, TransactionFailed, Update, attr_eq, exists, get_store

PUBLIC_SHARE_PATH = "/api/v1/public/thread-shares/"
# Concurrent posts to one thread retry this often before giving up with a 409.
_COUNTER_ATTEMPTS = 40
_LIVE = Expr("attribute_not_exists(#deleted)", {"#deleted": "deleted_at"})
THREAD_ID = re.compile(THREAD_ID_PATTERN)
SHARE_ID = re.compile(SHARE_ID_PATTERN)


def _author(access: Access, given: str | None) -> str:
    return given or access.principal.agent_name or access.actor_id


def _pause_before_retry(attempt: int) -> None:
    # Jitter only, so colliding writers spread out; not a security use of randomness.
    time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311


# --- threads -------------------------------------------------------------------------------


def _to_thread(item: dict[str, Any]) -> Thread:
    return Thread.model_validate(item)


def _load_live_thread(ws: str, thread_id: str) -> dict[str, Any]:
    # An id that could never have been minted is not looked up (nor sent to DynamoDB as a key).
    item = get_store().get(keys.thread_key(ws, thread_id)) if THREAD_ID.match(thread_id) else None
    if item is None or item.get("deleted_at"):
        raise NotFound(f"thread {thread_id} not found")
    return item


def create_thread(access: Access, body: ThreadCreate, request_id: str = "") -> Thread:
    ws = access.workspace_id
    thread_id = new_id("thr")
    at = iso()
    item = {
        **keys.thread_key(ws, thread_id),
        keys.ENTITY: "thread",
        keys.GSI1PK: keys.thread_list_gsi(ws),
        keys.GSI1SK: f"{at}#{thread_id}",
        **body.model_dump(),
        "id": thread_id,
        "workspace_id": ws,
        "status": ThreadStatus.active.value,
        "message_count": 0,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    tx = access.transaction()
    tx.put(item, Expr("attribute_not_exists(PK)"))
    audit.record(tx, ws, access.actor_id, "thread.created", "thread", thread_id, request_id, {"title": body.title})
    access.commit(tx)
    return _to_thread(item)


def get_thread(access: Access, thread_id: str) -> Thread:
    return _to_thread(_load_live_thread(access.workspace_id, thread_id))


def list_threads(
    access: Access, *, status: ThreadStatus | None, limit: int, cursor: str | None
) -> tuple[list[Thread], str | None]:
    """Most recently active first."""
    ws = access.workspace_id
    query = {"status": status}
    scope = f"threads:{ws}"
    page = get_store().query(
        keys.thread_list_gsi(ws),
        index=keys.GSI1,
        limit=limit,
        start_key=decode_cursor(cursor, scope, query),
        newest_first=True,
        filter=attr_eq("status", status.value) if status else None,
    )
    return [_to_thread(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def update_thread(
    access: Access, thread_id: str, body: ThreadUpdate, if_match: int | None = None, request_id: str = ""
) -> Thread:
    ws = access.workspace_id
    current = _load_live_thread(ws, thread_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"thread {thread_id} is at version {current['version']}, not {expected}",
            current_version=current["version"],
        )
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"version"})
    changes["updated_at"] = iso()
    changes["version"] = current["version"] + 1
    tx = access.transaction()
    tx.update(
        keys.thread_key(ws, thread_id),
        Update(set=changes),
        exists() & attr_eq("version", current["version"]) & _LIVE,
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "thread.updated",
        "thread",
        thread_id,
        request_id,
        {"fields": sorted(k for k in changes if k not in ("updated_at", "version"))},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(
            f"thread {thread_id} changed while it was being updated; reload and retry"
        ) from failure
    return _to_thread({**current, **changes})


def delete_thread(access: Access, thread_id: str, request_id: str = "") -> None:
    """Soft delete: the thread leaves lists, its messages become unreachable and its shares read 404.
    The search indexer, seeing the thread deleted, drops the postings of its messages too."""
    ws = access.workspace_id
    _load_live_thread(ws, thread_id)
    tx = access.transaction()
    tx.update(
        keys.thread_key(ws, thread_id),
        Update(set={"deleted_at": iso()}, remove=[keys.GSI1PK, keys.GSI1SK]),
        exists() & _LIVE,
    )
    audit.record(tx, ws, access.actor_id, "thread.deleted", "thread", thread_id, request_id)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise NotFound(f"thread {thread_id} not found") from failure


# --- thread messages -----------------------------------------------------------------------


def _to_message(item: dict[str, Any]) -> ThreadMessage:
    return ThreadMessage.model_validate(item)


def post_message(access: Access, thread_id: str, body: ThreadMessageCreate, request_id: str = "") -> ThreadMessage:
    ws = access.workspace_id
    author = _author(access, body.author)
    for attempt in range(_COUNTER_ATTEMPTS):
        thread = _load_live_thread(ws, thread_id)
        if thread["status"] != ThreadStatus.active:
            raise InvalidTransition(f"thread {thread_id} is archived; unarchive it to post", thread["status"])
        count = int(thread.get("message_count", 0))
        sequence = count + 1
        at = iso()
        message_id = new_id("msg")
        item = {
            **keys.thread_message_key(ws, thread_id, sequence),
            keys.ENTITY: "thread_message",
            "id": message_id,
            "workspace_id": ws,
            "thread_id": thread_id,
            "sequence": sequence,
            "role": body.role.value,
            "author": author,
            "content": body.content,
            "created_by": access.actor_id,
            "created_at": at,
        }
        tx = access.transaction()
        counter_index = len(tx.operations)
        tx.update(
            keys.thread_key(ws, thread_id),
            Update(
                set={
                    "message_count": sequence,
                    "last_message_at": at,
                    keys.GSI1SK: f"{at}#{thread_id}",
                }
            ),
            exists() & _LIVE & attr_eq("status", ThreadStatus.active.value) & attr_eq("message_count", count),
        )
        tx.put(item, Expr("attribute_not_exists(PK)"))
        audit.record(
            tx,
            ws,
            access.actor_id,
            "thread.message_posted",
            "thread",
            thread_id,
            request_id,
            {"message_id": message_id, "sequence": sequence},
        )
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            lost = failure.failed_index()
            if lost not in (counter_index, counter_index + 1) and "TransactionConflict" not in failure.reasons:
                raise
            # Another post took this number (or the thread changed): re-read and try the next one.
            _pause_before_retry(attempt)
            continue
        return _to_message(item)
    raise Conflict(f"thread {thread_id} is receiving too many messages at once; retry")


def list_messages(
    access: Access, thread_id: str, *, limit: int, cursor: str | None
) -> tuple[list[ThreadMessage], str | None]:
    """Oldest first, in sequence order."""
    ws = access.workspace_id
    _load_live_thread(ws, thread_id)
    return _message_page(ws, thread_id, f"thread-messages:{ws}:{thread_id}", limit, cursor)


def _message_page(
    ws: str, thread_id: str, scope: str, limit: int, cursor: str | None
) -> tuple[list[ThreadMessage], str | None]:
    page = get_store().query(
        keys.thread_pk(ws, thread_id),
        sk_prefix=keys.thread_message_prefix(),
        limit=limit,
        start_key=decode_cursor(cursor, scope, {}),
        consistent=True,
    )
    return [_to_message(item) for item in page.items], encode_cursor(page.last_key, scope, {})


# --- shares --------------------------------------------------------------------------------


def _to_share(item: dict[str, Any]) -> ThreadShare:
    return ThreadShare.model_validate(item)


def create_share(access: Access, thread_id: str, body: ThreadShareCreate, request_id: str = "") -> CreatedThreadShare:
    """A read-only link to the thread; the token is returned here once and stored only as a hash."""
    ws = access.workspace_id
    if not THREAD_ID.match(thread_id):
        raise NotFound(f"thread {thread_id} not found")
    share_id = new_id("shr")
    secret = new_secret("share")
    created = now()
    expires = created + timedelta(hours=body.expires_in_hours) if body.expires_in_hours else None
    item = {
        **keys.thread_share_key(ws, thread_id, share_id),
        keys.ENTITY: "thread_share",
        "id": share_id,
        "workspace_id": ws,
        "thread_id": thread_id,
        "token_hash": hash_secret(secret),
        "token_hint": secret_hint(secret),
        "created_by": access.actor_id,
        "created_at": iso(created),
        "expires_at": iso(expires) if expires else None,
    }
    tx = access.transaction()
    # The thread is not read first: the transaction itself requires it live.
    thread_check = len(tx.operations)
    tx.check(keys.thread_key(ws, thread_id), exists() & _LIVE)
    tx.put(item, Expr("attribute_not_exists(PK)"))
    tx.put(
        tokens.token_item(
            secret,
            kind="share",
            token_id=share_id,
            principal_id=access.actor_id,
            user_id=access.principal.user_id,
            scopes=["tasks:read"],
            workspace_id=ws,
            expires_at=epoch(expires) if expires else None,
            extra={"thread_id": thread_id, "share_id": share_id},
        ),
        Expr("attribute_not_exists(PK)"),
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "thread.shared",
        "thread",
        thread_id,
        request_id,
        {"share_id": share_id, "expires_at": item["expires_at"]},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed_index() == thread_check:
            raise NotFound(f"thread {thread_id} not found") from failure
        raise
    return CreatedThreadShare.model_validate({**item, "token": secret, "path": f"{PUBLIC_SHARE_PATH}{secret}"})


def list_shares(
    access: Access, thread_id: str, *, limit: int, cursor: str | None
) -> tuple[list[ThreadShare], str | None]:
    """Every share of the thread, revoked ones included (with `revoked_at`); never the tokens."""
    ws = access.workspace_id
    _load_live_thread(ws, thread_id)
    scope = f"thread-shares:{ws}:{thread_id}"
    page = get_store().query(
        keys.thread_pk(ws, thread_id),
        sk_prefix=keys.thread_share_prefix(),
        limit=limit,
        start_key=decode_cursor(cursor, scope, {}),
        consistent=True,
    )
    return [_to_share(item) for item in page.items], encode_cursor(page.last_key, scope, {})


def revoke_share(access: Access, thread_id: str, share_id: str, request_id: str = "") -> None:
    """The token stops working at once; the share stays listed with `revoked_at`."""
    ws = access.workspace_id
    _load_live_thread(ws, thread_id)
    share_key = keys.thread_share_key(ws, thread_id, share_id)
    share = get_store().get(share_key) if SHARE_ID.match(share_id) else None
    if share is None:
        raise NotFound(f"share {share_id} not found")
    if share.get("revoked_at"):
        raise InvalidTransition(f"share {share_id} is already revoked", "revoked")
    at = iso()
    tx = access.transaction()
    tx.update(share_key, Update(set={"revoked_at": at}), exists() & Expr("attribute_not_exists(revoked_at)"))
    expires_at = share.get("expires_at")
    if expires_at is None or expires_at > at:
        # An expired token already reads 404 and may be gone (TTL): only a live one needs revoking.
        tx.update(keys.token_key(share["token_hash"]), Update(set={"revoked": epoch()}), exists())
    audit.record(
        tx, ws, access.actor_id, "thread.share_revoked", "thread", thread_id, request_id, {"share_id": share_id}
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise InvalidTransition(f"share {share_id} is already revoked", "revoked") from failure


def read_shared_thread(token: str, *, limit: int, cursor: str | None) -> tuple[SharedThreadView, str | None]:
    """What anyone holding a live share token may read. Unknown, revoked or expired tokens, tokens
    of another kind and deleted threads all answer the same 404."""
    record = tokens.lookup(token)
    if record is None or record.get("kind") != "share" or not record.get("thread_id"):
        raise NotFound("share not found")
    ws, thread_id = str(record["workspace_id"]), str(record["thread_id"])
    thread = get_store().get(keys.thread_key(ws, thread_id))
    if thread is None or thread.get("deleted_at"):
        raise NotFound("share not found")
    # Cursors are bound to this share, so one cannot be replayed through another.
    scope = f"thread-share:{record[keys.PK]}"
    messages, next_cursor = _message_page(ws, thread_id, scope, limit, cursor)
    return SharedThreadView.model_validate({**thread, "messages": messages}), next_cursor


# --- team messages -------------------------------------------------------------------------


def _to_team_message(item: dict[str, Any]) -> TeamMessage:
    return TeamMessage.model_validate(item)


def post_team_message(access: Access, body: TeamMessageCreate, request_id: str = "") -> TeamMessage:
    ws = access.workspace_id
    assert body.channel is not None and body.mode is not None  # filled in by the model
    message_id = new_id("msg")
    item = {
        **keys.team_message_key(ws, body.channel, message_id),
        keys.ENTITY: "team_message",
        keys.GSI1PK: keys.team_message_list_gsi(ws),
        keys.GSI1SK: message_id,
        "id": message_id,
        "workspace_id": ws,
        "channel": body.channel,
        "mode": body.mode.value,
        "author": _author(access, body.author),
        "to": body.to,
        "content": body.content,
        "created_by": access.actor_id,
        "created_at": iso(),
    }
    tx = access.transaction()
    tx.put(item, Expr("attribute_not_exists(PK)"))
    audit.record(
        tx,
        ws,
        access.actor_id,
        "message.posted",
        "message",
        message_id,
        request_id,
        {"channel": body.channel, "mode": body.mode.value},
    )
    access.commit(tx)
    return _to_team_message(item)


def list_team_messages(
    access: Access, *, channel: str | None, mode: MessageMode | None, limit: int, cursor: str | None
) -> tuple[list[TeamMessage], str | None]:
    """Newest first: one channel's messages, or every channel's when none is named."""
    ws = access.workspace_id
    query = {"channel": channel, "mode": mode}
    scope = f"team-messages:{ws}"
    start = decode_cursor(cursor, scope, query)
    condition = attr_eq("mode", mode.value) if mode else None
    if channel is not None:
        page = get_store().query(
            keys.team_message_pk(ws, channel), limit=limit, start_key=start, newest_first=True, filter=condition
        )
    else:
        page = get_store().query(
            keys.team_message_list_gsi(ws),
            index=keys.GSI1,
            limit=limit,
            start_key=start,
            newest_first=True,
            filter=condition,
        )
    return [_to_team_message(item) for item in page.items], encode_cursor(page.last_key, scope, query)
