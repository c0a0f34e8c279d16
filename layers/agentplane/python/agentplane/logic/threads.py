"""Threads, their ordered messages and public shares; team messages by channel.

A thread's messages are numbered 1, 2, 3… by a counter on the thread item: each post moves the
counter from n to n+1 with a conditional write in the same transaction as the message, so two
concurrent posts can never take the same number (the loser re-reads and takes the next one).
"""

from __future__ import annotations

import re
from datetime import timedelta

from agentplane import keys
from agentplane.access import Access
from agentplane.auth import tokens
from agentplane.auth.secrets import hash_secret, secret_hint
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.threads import (
    TeamMessageItem,
    ThreadItem,
    ThreadMessageItem,
    ThreadShareItem,
    messages_of_channel,
    messages_of_thread,
    shares_of_thread,
    team_messages_of_workspace,
    threads_of_workspace,
)
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
from agentplane.store import TransactionFailed, get_store, retrying

PUBLIC_SHARE_PATH = "/api/v1/public/thread-shares/"
# Concurrent posts to one thread retry this often before giving up with a 409.
_COUNTER_ATTEMPTS = 40
THREAD_ID = re.compile(THREAD_ID_PATTERN)
SHARE_ID = re.compile(SHARE_ID_PATTERN)
# The operations of a post that another post can win (it took the number first).
_COUNTER, _MESSAGE = "message_count", "message"


def _author(access: Access, given: str | None) -> str:
    return given or access.principal.agent_name or access.actor_id


# --- threads -------------------------------------------------------------------------------


def _load_live_thread(ws: str, thread_id: str) -> ThreadItem:
    # An id that could never have been minted is not looked up (nor sent to DynamoDB as a key).
    thread = get_store().read(ThreadItem, keys.thread_key(ws, thread_id)) if THREAD_ID.match(thread_id) else None
    if thread is None or thread.deleted_at:
        raise NotFound(f"thread {thread_id} not found")
    return thread


def create_thread(access: Access, body: ThreadCreate) -> Thread:
    at = iso()
    thread = ThreadItem(
        workspace_id=access.workspace_id,
        id=new_id("thr"),
        **body.model_dump(),
        status=ThreadStatus.active.value,
        message_count=0,
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    tx = access.transaction()
    tx.create(thread)
    access.audit(tx, "thread.created", "thread", thread.id, {"title": body.title})
    access.commit(tx)
    return thread.to_model()


def get_thread(access: Access, thread_id: str) -> Thread:
    return _load_live_thread(access.workspace_id, thread_id).to_model()


def list_threads(
    access: Access, *, status: ThreadStatus | None, limit: int, cursor: str | None
) -> tuple[list[Thread], str | None]:
    """Most recently active first."""
    ws = access.workspace_id
    query = {"status": status}
    scope = f"threads:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = threads_of_workspace(ws, status=status.value if status else None, limit=limit, start=start)
    return [thread.to_model() for thread in page.items], encode_cursor(page.last_key, scope, query)


def update_thread(access: Access, thread_id: str, body: ThreadUpdate, if_match: int | None = None) -> Thread:
    thread = _load_live_thread(access.workspace_id, thread_id)
    expected = body.version or if_match
    if expected is not None and expected != thread.version:
        raise PreconditionFailed(
            f"thread {thread_id} is at version {thread.version}, not {expected}", current_version=thread.version
        )
    changes = body.model_dump(exclude_none=True, exclude={"version"})
    tx = access.transaction()
    tx.change(thread, thread.assign(**changes, updated_at=iso()), ThreadItem.undeleted())
    access.audit(tx, "thread.updated", "thread", thread_id, {"fields": sorted(changes)})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(
            f"thread {thread_id} changed while it was being updated; reload and retry"
        ) from failure
    return thread.to_model()


def delete_thread(access: Access, thread_id: str) -> None:
    """Soft delete: the thread leaves lists, its messages become unreachable and its shares read 404.
    The search indexer, seeing the thread deleted, drops the postings of its messages too."""
    thread = _load_live_thread(access.workspace_id, thread_id)
    tx = access.transaction()
    tx.adjust(ThreadItem, thread.key, thread.soft_delete(iso()), ThreadItem.undeleted())
    access.audit(tx, "thread.deleted", "thread", thread_id)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise NotFound(f"thread {thread_id} not found") from failure


# --- thread messages -----------------------------------------------------------------------


def _lost_the_number(failure: Exception) -> bool:
    """Another post took this number (or the thread changed), or DynamoDB cancelled the
    transaction because another one touched the thread at once: re-read and take the next one."""
    if not isinstance(failure, TransactionFailed):
        return False
    return failure.failed in (_COUNTER, _MESSAGE) or "TransactionConflict" in failure.reasons


def post_message(access: Access, thread_id: str, body: ThreadMessageCreate) -> ThreadMessage:
    ws = access.workspace_id
    author = _author(access, body.author)

    def take_next_number() -> ThreadMessageItem:
        thread = _load_live_thread(ws, thread_id)
        if thread.status != ThreadStatus.active:
            raise InvalidTransition(f"thread {thread_id} is archived; unarchive it to post", thread.status)
        count = int(thread.message_count)
        at = iso()
        message = ThreadMessageItem(
            workspace_id=ws,
            thread_id=thread_id,
            id=new_id("msg"),
            sequence=count + 1,
            role=body.role.value,
            author=author,
            content=body.content,
            created_by=access.actor_id,
            created_at=at,
        )
        still_open = (
            ThreadItem.undeleted()
            & (ThreadItem.status == ThreadStatus.active.value)
            & (ThreadItem.message_count == count)
        )
        tx = access.transaction()
        tx.adjust(ThreadItem, thread.key, thread.numbered(count + 1, at), still_open, name=_COUNTER)
        tx.create(message, name=_MESSAGE)
        details = {"message_id": message.id, "sequence": count + 1}
        access.audit(tx, "thread.message_posted", "thread", thread_id, details)
        access.commit(tx)
        return message

    try:
        message = retrying(
            take_next_number, retry_if=_lost_the_number, attempts=_COUNTER_ATTEMPTS, base_delay=0.001, max_delay=0.05
        )
    except TransactionFailed as failure:
        if _lost_the_number(failure):
            raise Conflict(f"thread {thread_id} is receiving too many messages at once; retry") from failure
        raise
    return message.to_model()


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
    page = messages_of_thread(ws, thread_id, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [message.to_model() for message in page.items], encode_cursor(page.last_key, scope, {})


# --- shares --------------------------------------------------------------------------------


def create_share(access: Access, thread_id: str, body: ThreadShareCreate) -> CreatedThreadShare:
    """A read-only link to the thread; the token is returned here once and stored only as a hash."""
    ws = access.workspace_id
    if not THREAD_ID.match(thread_id):
        raise NotFound(f"thread {thread_id} not found")
    share_id = new_id("shr")
    created = now()
    expires = created + timedelta(hours=body.expires_in_hours) if body.expires_in_hours else None
    tx = access.transaction()
    # The thread is not read first: the transaction itself requires it live.
    tx.require(ThreadItem, keys.thread_key(ws, thread_id), ThreadItem.live(), name="thread")
    secret = tokens.issue(
        tx,
        "share",
        token_id=share_id,
        principal_id=access.actor_id,
        user_id=access.principal.user_id,
        scopes=["tasks:read"],
        workspace_id=ws,
        expires_at=epoch(expires) if expires else None,
        extra={"thread_id": thread_id, "share_id": share_id},
    )
    share = ThreadShareItem(
        workspace_id=ws,
        thread_id=thread_id,
        id=share_id,
        token_hash=hash_secret(secret),
        token_hint=secret_hint(secret),
        created_by=access.actor_id,
        created_at=iso(created),
        expires_at=iso(expires) if expires else None,
    )
    tx.create(share)
    access.audit(tx, "thread.shared", "thread", thread_id, {"share_id": share_id, "expires_at": share.expires_at})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == "thread":
            raise NotFound(f"thread {thread_id} not found") from failure
        raise
    return CreatedThreadShare.model_validate(
        {**share.fields(), "token": secret, "path": f"{PUBLIC_SHARE_PATH}{secret}"}
    )


def list_shares(
    access: Access, thread_id: str, *, limit: int, cursor: str | None
) -> tuple[list[ThreadShare], str | None]:
    """Every share of the thread, revoked ones included (with `revoked_at`); never the tokens."""
    ws = access.workspace_id
    _load_live_thread(ws, thread_id)
    scope = f"thread-shares:{ws}:{thread_id}"
    page = shares_of_thread(ws, thread_id, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [share.to_model() for share in page.items], encode_cursor(page.last_key, scope, {})


def revoke_share(access: Access, thread_id: str, share_id: str) -> None:
    """The token stops working at once; the share stays listed with `revoked_at`."""
    ws = access.workspace_id
    _load_live_thread(ws, thread_id)
    share_key = keys.thread_share_key(ws, thread_id, share_id)
    share = get_store().read(ThreadShareItem, share_key) if SHARE_ID.match(share_id) else None
    if share is None:
        raise NotFound(f"share {share_id} not found")
    if share.revoked_at:
        raise InvalidTransition(f"share {share_id} is already revoked", "revoked")
    at = iso()
    expires_at = share.expires_at
    tx = access.transaction()
    tx.adjust(ThreadShareItem, share.key, share.assign(revoked_at=at), ThreadShareItem.revoked_at.does_not_exist())
    if expires_at is None or expires_at > at:
        # An expired token already reads 404 and may be gone (TTL): only a live one needs revoking.
        tokens.revoke_by_hash(tx, share.token_hash)
    access.audit(tx, "thread.share_revoked", "thread", thread_id, {"share_id": share_id})
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
    thread = get_store().read(ThreadItem, keys.thread_key(ws, thread_id))
    if thread is None or thread.deleted_at:
        raise NotFound("share not found")
    # Cursors are bound to this share, so one cannot be replayed through another.
    scope = f"thread-share:{record[keys.PK]}"
    messages, next_cursor = _message_page(ws, thread_id, scope, limit, cursor)
    return SharedThreadView.model_validate({**thread.fields(), "messages": messages}), next_cursor


# --- team messages -------------------------------------------------------------------------


def post_team_message(access: Access, body: TeamMessageCreate) -> TeamMessage:
    assert body.channel is not None and body.mode is not None  # filled in by the model
    message = TeamMessageItem(
        workspace_id=access.workspace_id,
        channel=body.channel,
        id=new_id("msg"),
        mode=body.mode.value,
        author=_author(access, body.author),
        to=body.to,
        content=body.content,
        created_by=access.actor_id,
        created_at=iso(),
    )
    tx = access.transaction()
    tx.create(message)
    details = {"channel": body.channel, "mode": body.mode.value}
    access.audit(tx, "message.posted", "message", message.id, details)
    access.commit(tx)
    return message.to_model()


def list_team_messages(
    access: Access, *, channel: str | None, mode: MessageMode | None, limit: int, cursor: str | None
) -> tuple[list[TeamMessage], str | None]:
    """Newest first: one channel's messages, or every channel's when none is named."""
    ws = access.workspace_id
    query = {"channel": channel, "mode": mode}
    scope = f"team-messages:{ws}"
    start = decode_cursor(cursor, scope, query)
    wanted = mode.value if mode else None
    if channel is not None:
        page = messages_of_channel(ws, channel, mode=wanted, limit=limit, start=start)
    else:
        page = team_messages_of_workspace(ws, mode=wanted, limit=limit, start=start)
    return [message.to_model() for message in page.items], encode_cursor(page.last_key, scope, query)
