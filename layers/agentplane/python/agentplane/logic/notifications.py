"""Notifications: one inbox per member per workspace, and an unread counter beside it.

The counter changes in the same transaction as every write that changes what is unread (create,
read, read-all), so `unread-count` is one GetItem and never drifts. A notification sent to several
members is one id delivered to each inbox; the table's stream carries every delivery (entity
`notification`, with `workspace_id` and `user_id`) to whoever pushes them to live clients.

An inbox's notifications land in id order: each delivery moves the counter's `last_id` up to its own
id, on condition that it is greater (a delivery that would land behind a newer one is retried with a
newer id). So once a reader has seen a notification, every one written later has a greater id, and
"the notifications after id X" (SSE resume, WebSocket replay) never misses one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.auth.scopes import Role
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.notifications import (
    NotificationCounterItem,
    NotificationItem,
    inbox,
    unread_notifications,
    workspace_member_ids,
)
from agentplane.entities.workspaces import MemberItem
from agentplane.errors import Conflict, Forbidden, NotFound, Unprocessable
from agentplane.ids import iso, new_id, new_id_after, now
from agentplane.models.notifications import (
    Notification,
    NotificationCreate,
    NotificationCreated,
    NotificationType,
    ReadAllResult,
    UnreadCount,
)
from agentplane.observability import notifications_delivered
from agentplane.store import Transaction, TransactionFailed, get_store

MAX_FANOUT = 200
# A delivery is two writes (the notification and the counter); a transaction holds 100 operations,
# of which the caller's guards and the audit row take a few.
RECIPIENTS_PER_TRANSACTION = 45
# The most recipients `notify` accepts when it joins a caller's transaction.
MAX_RECIPIENTS_IN_CALLER_TX = 30
# Read notifications expire this long after they were read; unread ones stay until read.
READ_RETENTION = timedelta(days=90)
# Bounds the work of one read-all call (a larger backlog takes another call).
READ_ALL_MAX = 1000
_NOTIFICATION_ID = re.compile(r"^ntf_[0-9a-z]{26}$")
# The recipient a notification names must still be a member when it lands.
_RECIPIENT = "recipient"


def _fields(
    kind: NotificationType | str,
    title: str,
    body: str,
    data: Mapping[str, Any] | None,
    link: str | None,
    source: str | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "type": NotificationType(kind).value,
        "title": title,
        "body": body,
        "data": dict(data or {}),
    }
    if link:
        fields["link"] = link
    if source:
        fields["source"] = source
    return fields


def _inbox_of(user_id: str) -> str:
    """The name of a delivery's counter update in its transaction (one per recipient)."""
    return f"inbox:{user_id}"


def _deliver(
    tx: Transaction,
    ws: str,
    user_ids: Iterable[str],
    notification_id: str,
    fields: Mapping[str, Any],
    created_by: str,
    at: str,
) -> list[str]:
    """Add one delivery per recipient to `tx`: the unread notification and +1 on their counter,
    whose `last_id` moves up to this id (refused if the inbox already holds a newer one). Returns
    the names of the counter updates."""
    inboxes: list[str] = []
    for user_id in user_ids:
        delivery = NotificationItem(
            workspace_id=ws, user_id=user_id, id=notification_id, **fields, created_by=created_by, created_at=at
        )
        tx.create(delivery)
        inboxes.append(_inbox_of(user_id))
        tx.upsert(
            NotificationCounterItem,
            keys.notification_counter_key(ws, user_id),
            NotificationCounterItem.arrival(ws, user_id, notification_id),
            NotificationCounterItem.lands_after(notification_id),
            name=inboxes[-1],
        )
    return inboxes


def _newest_refusing(failure: TransactionFailed, inboxes: Sequence[str]) -> str | None:
    """The newest id held by an inbox that refused a delivery as out of order (None: no inbox did)."""
    refused = []
    for name in inboxes:
        if failure.reason(name) == "ConditionalCheckFailed":
            counter = failure.current(name, NotificationCounterItem)
            refused.append(str(counter.last_id or "") if counter else "")
    return max(refused) if refused else None


def _id_after(newest: str | None) -> str:
    """A new notification id, greater than `newest` even if this clock is behind whoever wrote it."""
    return new_id_after("ntf", newest)


def newest_id(ws: str, user_id: str) -> str | None:
    """The id of the newest notification in a member's inbox (every later one sorts after it)."""
    counter = get_store().read(NotificationCounterItem, keys.notification_counter_key(ws, user_id))
    return str(counter.last_id) if counter and counter.last_id else None


def _created(
    ws: str, notification_id: str, fields: Mapping[str, Any], recipients: list[str], created_by: str, at: str
) -> NotificationCreated:
    notifications_delivered(len(recipients))
    return NotificationCreated.model_validate(
        {
            **fields,
            "id": notification_id,
            "workspace_id": ws,
            "recipients": recipients,
            "created_by": created_by,
            "created_at": at,
        }
    )


def _unique(user_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(user_ids))


def _chunks(values: Sequence[str], size: int) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def notify(
    tx: Transaction | None,
    ws: str,
    user_ids: Iterable[str],
    type: NotificationType | str,
    title: str,
    body: str = "",
    data: Mapping[str, Any] | None = None,
    *,
    link: str | None = None,
    source: str | None = None,
    created_by: str = "system",
) -> NotificationCreated:
    """Send one notification to each of `user_ids` in workspace `ws` (other families call this:
    a run that needs input or finished, an agent that stalled).

    With `tx`, the deliveries join the caller's transaction (at most MAX_RECIPIENTS_IN_CALLER_TX
    recipients) and happen when the caller commits. Without, they are written here, in
    transactions of RECIPIENTS_PER_TRANSACTION recipients each. Recipients are not re-checked for
    membership: the caller names members.
    """
    recipients = _unique(user_ids)
    if tx is not None and len(recipients) > MAX_RECIPIENTS_IN_CALLER_TX:
        raise ValueError(f"at most {MAX_RECIPIENTS_IN_CALLER_TX} recipients fit in the caller's transaction")
    fields = _fields(type, title[:200], body[:4000], data, link, source)
    at = iso()
    if tx is not None:
        # The caller commits: start above what the inboxes hold, so only a delivery racing this
        # one can refuse it (the caller then retries its transaction).
        counters = get_store().read_many(
            NotificationCounterItem, [keys.notification_counter_key(ws, u) for u in recipients]
        )
        held = [str(c.last_id) for c in counters if c and c.last_id]
        notification_id = _id_after(max(held) if held else None)
        _deliver(tx, ws, recipients, notification_id, fields, created_by, at)
        return _created(ws, notification_id, fields, recipients, created_by, at)
    first_id: str | None = None
    for chunk in _chunks(recipients, RECIPIENTS_PER_TRANSACTION):
        chunk_id = _commit_in_order(
            first_id or new_id("ntf"),
            partial(_delivery_tx, ws, chunk, fields, created_by, at),
        )
        first_id = first_id or chunk_id
    return _created(ws, first_id or new_id("ntf"), fields, recipients, created_by, at)


# A delivery refused as out of order is retried with a newer id this many times.
_ORDER_ATTEMPTS = 5


def _delivery_tx(
    ws: str,
    user_ids: Sequence[str],
    fields: Mapping[str, Any],
    created_by: str,
    at: str,
    notification_id: str,
) -> tuple[Transaction, list[str]]:
    tx = get_store().transaction()
    return tx, _deliver(tx, ws, user_ids, notification_id, fields, created_by, at)


def _commit_in_order(
    notification_id: str,
    build: Callable[[str], tuple[Transaction, list[str]]],
    commit: Callable[[Transaction], None] = lambda tx: tx.commit(),
) -> str:
    """Commit the deliveries `build(id)` makes; when an inbox already holds a newer notification,
    build them again with an id after it. Returns the id the deliveries landed with."""
    for _attempt in range(_ORDER_ATTEMPTS):
        tx, inboxes = build(notification_id)
        try:
            commit(tx)
        except TransactionFailed as failure:
            newest = _newest_refusing(failure, inboxes)
            if newest is None:
                raise
            notification_id = _id_after(newest)
            continue
        return notification_id
    raise Conflict("notifications to these members kept arriving at once; try again")


def _member_ids(ws: str) -> list[str]:
    """Every member of the workspace: one bounded Query (fan-out is capped at MAX_FANOUT members)."""
    members, more = workspace_member_ids(ws, limit=MAX_FANOUT + 1)
    if len(members) > MAX_FANOUT or more:
        raise Unprocessable(
            f"a notification can go to all members of a workspace of at most {MAX_FANOUT} members",
            errors=[{"field": "all_members", "message": f"more than {MAX_FANOUT} members; name user_id instead"}],
        )
    return members


def create_notification(access: Access, body: NotificationCreate) -> NotificationCreated:
    ws = access.workspace_id
    actor = access.actor_id
    to_others = body.all_members or (body.user_id is not None and body.user_id != actor)
    if to_others and access.role == Role.viewer:
        raise Forbidden("a viewer can only send notifications to themselves", role=access.role.value)
    if access.principal.user_id is None and not (body.all_members or body.user_id):
        raise Unprocessable(
            "an agent key has no inbox: name user_id or set all_members",
            errors=[{"field": "user_id", "message": "required for agent keys"}],
        )
    recipients = _member_ids(ws) if body.all_members else [body.user_id or actor]
    fields = _fields(body.type, body.title, body.body, body.data, body.link, body.source)
    at = iso()
    details = {"type": fields["type"], "title": body.title, "recipients": len(recipients)}
    # The caller's own membership is already the transaction's guard (one check per item).
    named_member = body.user_id if body.user_id not in (None, access.principal.user_id) else None
    first_id: str | None = None
    for index, chunk in enumerate(_chunks(recipients, RECIPIENTS_PER_TRANSACTION)):

        def build(
            notification_id: str, chunk: Sequence[str] = chunk, first: bool = index == 0
        ) -> tuple[Transaction, list[str]]:
            tx = access.transaction()
            if named_member is not None:
                # The recipient must still be a member when the notification lands.
                tx.require(MemberItem, keys.member_key(ws, named_member), MemberItem.present(), name=_RECIPIENT)
            inboxes = _deliver(tx, ws, chunk, notification_id, fields, actor, at)
            if first:
                access.audit(tx, "notification.created", "notification", notification_id, details)
            return tx, inboxes

        try:
            chunk_id = _commit_in_order(first_id or new_id("ntf"), build, access.commit)
        except TransactionFailed as failure:
            if failure.failed == _RECIPIENT:
                raise Unprocessable(
                    f"user {body.user_id} is not a member of this workspace",
                    errors=[{"field": "user_id", "message": "not a member of this workspace"}],
                ) from failure
            raise
        first_id = first_id or chunk_id
    return _created(ws, first_id or new_id("ntf"), fields, recipients, actor, at)


def list_notifications(
    access: Access,
    *,
    read: bool | None,
    type: NotificationType | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Notification], str | None]:
    """The caller's notifications, newest first. Unread ones come from the sparse unread index, so
    `read=false` never reads past notifications already read."""
    ws, user_id = access.workspace_id, access.actor_id
    query = {"read": read, "type": type}
    scope = f"notifications:{ws}:{user_id}"
    start = decode_cursor(cursor, scope, query)
    kind = type.value if type is not None else None
    if read is False:
        page = unread_notifications(ws, user_id, type=kind, newest_first=True, limit=limit, start=start)
    else:
        page = inbox(ws, user_id, only_read=read is True, type=kind, limit=limit, start=start)
    return [item.to_model() for item in page.items], encode_cursor(page.last_key, scope, query)


def unread_count(access: Access) -> UnreadCount:
    counter = get_store().read(
        NotificationCounterItem, keys.notification_counter_key(access.workspace_id, access.actor_id)
    )
    return UnreadCount(count=max(0, int(counter.unread)) if counter else 0)


def mark_read(access: Access, notification_id: str) -> Notification:
    """Mark one of the caller's notifications read; reading one already read changes nothing."""
    ws, user_id = access.workspace_id, access.actor_id
    if not _NOTIFICATION_ID.match(notification_id):
        raise NotFound(f"notification {notification_id[:40]} not found")
    key = keys.notification_key(ws, user_id, notification_id)
    current = get_store().read(NotificationItem, key)
    if current is None:
        raise NotFound(f"notification {notification_id} not found")
    if current.read_at:
        return current.to_model()
    tx = access.transaction()
    tx.adjust(NotificationItem, key, current.mark_read(now(), READ_RETENTION), NotificationItem.unread())
    counter = NotificationCounterItem.counted(ws, user_id, -1)
    tx.upsert(NotificationCounterItem, keys.notification_counter_key(ws, user_id), counter)
    access.audit(tx, "notification.read", "notification", notification_id)
    try:
        access.commit(tx)
    except TransactionFailed:
        # Read meanwhile by another call of the same member: it is read, and counted once.
        latest = get_store().read(NotificationItem, key)
        if latest is None:
            raise NotFound(f"notification {notification_id} not found") from None
        return latest.to_model()
    return current.to_model()


def mark_all_read(access: Access) -> ReadAllResult:
    """Mark every unread notification of the caller read, in transactions that each take the
    counter down by exactly the number they mark. One read concurrently is left out and retried."""
    ws, user_id = access.workspace_id, access.actor_id
    updated = 0
    start: dict[str, Any] | None = None
    audited = False
    while updated < READ_ALL_MAX:
        limit = min(RECIPIENTS_PER_TRANSACTION, READ_ALL_MAX - updated)
        page = unread_notifications(ws, user_id, newest_first=False, limit=limit, start=start)
        if page.items:
            updated += _read_batch(access, page.items, audit=not audited)
            audited = True
        start = page.last_key
        if not start:
            break
    return ReadAllResult(updated=updated, count=unread_count(access).count)


def _read_batch(access: Access, notifications: list[NotificationItem], *, audit: bool) -> int:
    """Mark `notifications` read in one transaction; the ones someone else read first are
    dropped and the rest retried. Returns how many this call marked."""
    ws, user_id = access.workspace_id, access.actor_id
    at = now()
    # Worked out once: marking one read moves it out of the unread index, which it then is not.
    reads = {item.id: item.mark_read(at, READ_RETENTION) for item in notifications}
    pending = list(notifications)
    for _ in range(5):
        if not pending:
            return 0
        tx = access.transaction()
        for item in pending:
            tx.adjust(NotificationItem, item.key, reads[item.id], NotificationItem.unread(), name=item.id)
        counter = NotificationCounterItem.counted(ws, user_id, -len(pending))
        tx.upsert(NotificationCounterItem, keys.notification_counter_key(ws, user_id), counter)
        if audit:
            access.audit(tx, "notification.read_all", "inbox", user_id)
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            pending = [item for item in pending if failure.reason(item.id) != "ConditionalCheckFailed"]
            continue
        return len(pending)
    raise Conflict("notifications kept changing while they were being marked read; try again")
