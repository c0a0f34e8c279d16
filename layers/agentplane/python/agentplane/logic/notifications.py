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

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.auth.scopes import Role
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, Forbidden, NotFound, Unprocessable
from agentplane.ids import epoch, iso, new_id, new_id_after, now
from agentplane.models.notifications import (
    Notification,
    NotificationCreate,
    NotificationCreated,
    NotificationType,
    ReadAllResult,
    UnreadCount,
)
from agentplane.observability import notifications_delivered
from agentplane.store import Expr, Transaction, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

ENTITY = "notification"
COUNTER_ENTITY = "notification_counter"
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
_UNREAD = Expr("attribute_not_exists(#read_at)", {"#read_at": "read_at"})


def _to_notification(item: Mapping[str, Any]) -> Notification:
    return Notification.model_validate({**item, "read": bool(item.get("read_at"))})


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


def _deliver(
    tx: Transaction,
    ws: str,
    user_ids: Iterable[str],
    notification_id: str,
    fields: Mapping[str, Any],
    created_by: str,
    at: str,
) -> list[int]:
    """Add one delivery per recipient to `tx`: the unread notification and +1 on their counter,
    whose `last_id` moves up to this id (refused if the inbox already holds a newer one). Returns
    the indexes of the counter updates in `tx`."""
    counters: list[int] = []
    for user_id in user_ids:
        tx.put(
            {
                **keys.notification_key(ws, user_id, notification_id),
                keys.GSI1PK: keys.notification_unread_gsi(ws, user_id),
                keys.GSI1SK: notification_id,
                keys.ENTITY: ENTITY,
                **fields,
                "id": notification_id,
                "workspace_id": ws,
                "user_id": user_id,
                "created_by": created_by,
                "created_at": at,
            },
            not_exists(),
        )
        counters.append(len(tx.operations))
        arrival = _counter_change(ws, user_id, +1)
        arrival = Update(set={**arrival.set, "last_id": notification_id}, add=arrival.add)
        tx.update(keys.notification_counter_key(ws, user_id), arrival, _lands_after(notification_id))
    return counters


def _lands_after(notification_id: str) -> Expr:
    return Expr("attribute_not_exists(#last) OR #last < :id", {"#last": "last_id"}, {":id": notification_id})


def _newest_refusing(failure: TransactionFailed, counters: Sequence[int]) -> str | None:
    """The newest id held by an inbox that refused a delivery as out of order (None: no inbox did)."""
    refused = [
        str((failure.items[i] or {}).get("last_id") or "")
        for i in counters
        if i < len(failure.reasons) and failure.reasons[i] == "ConditionalCheckFailed"
    ]
    return max(refused) if refused else None


def _id_after(newest: str | None) -> str:
    """A new notification id, greater than `newest` even if this clock is behind whoever wrote it."""
    return new_id_after("ntf", newest)


def newest_id(ws: str, user_id: str) -> str | None:
    """The id of the newest notification in a member's inbox (every later one sorts after it)."""
    counter = get_store().get(keys.notification_counter_key(ws, user_id))
    return str(counter["last_id"]) if counter and counter.get("last_id") else None


def _counter_change(ws: str, user_id: str, delta: int) -> Update:
    return Update(
        set={keys.ENTITY: COUNTER_ENTITY, "workspace_id": ws, "user_id": user_id, "updated_at": iso()},
        add={"count": delta},
    )


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
        counters = get_store().get_many([keys.notification_counter_key(ws, u) for u in recipients])
        held = [str(c["last_id"]) for c in counters if c and c.get("last_id")]
        notification_id = _id_after(max(held) if held else None)
        _deliver(tx, ws, recipients, notification_id, fields, created_by, at)
        return _created(ws, notification_id, fields, recipients, created_by, at)
    first_id: str | None = None
    for chunk in _chunks(recipients, RECIPIENTS_PER_TRANSACTION):
        chunk_id = _commit_in_order(
            first_id or new_id("ntf"),
            partial(_delivery_tx, None, ws, chunk, fields, created_by, at),
        )
        first_id = first_id or chunk_id
    return _created(ws, first_id or new_id("ntf"), fields, recipients, created_by, at)


# A delivery refused as out of order is retried with a newer id this many times.
_ORDER_ATTEMPTS = 5


def _delivery_tx(
    access: Access | None,
    ws: str,
    user_ids: Sequence[str],
    fields: Mapping[str, Any],
    created_by: str,
    at: str,
    notification_id: str,
) -> tuple[Transaction, list[int]]:
    tx = access.transaction() if access is not None else get_store().transaction()
    return tx, _deliver(tx, ws, user_ids, notification_id, fields, created_by, at)


def _commit_in_order(
    notification_id: str,
    build: Callable[[str], tuple[Transaction, list[int]]],
    commit: Callable[[Transaction], None] = lambda tx: tx.commit(),
) -> str:
    """Commit the deliveries `build(id)` makes; when an inbox already holds a newer notification,
    build them again with an id after it. Returns the id the deliveries landed with."""
    for _attempt in range(_ORDER_ATTEMPTS):
        tx, counters = build(notification_id)
        try:
            commit(tx)
        except TransactionFailed as failure:
            newest = _newest_refusing(failure, counters)
            if newest is None:
                raise
            notification_id = _id_after(newest)
            continue
        return notification_id
    raise Conflict("notifications to these members kept arriving at once; try again")


def _member_ids(ws: str) -> list[str]:
    """Every member of the workspace: one bounded Query (fan-out is capped at MAX_FANOUT members)."""
    page = get_store().query(keys.ws_pk(ws), sk_prefix=keys.MEMBER_PREFIX, limit=MAX_FANOUT + 1, consistent=True)
    if len(page.items) > MAX_FANOUT or page.last_key:
        raise Unprocessable(
            f"a notification can go to all members of a workspace of at most {MAX_FANOUT} members",
            errors=[{"field": "all_members", "message": f"more than {MAX_FANOUT} members; name user_id instead"}],
        )
    return [str(item["user_id"]) for item in page.items]


def create_notification(access: Access, body: NotificationCreate, request_id: str = "") -> NotificationCreated:
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
    first_id: str | None = None
    for index, chunk in enumerate(_chunks(recipients, RECIPIENTS_PER_TRANSACTION)):
        check_at: list[int] = []

        def build(
            notification_id: str, chunk: Sequence[str] = chunk, index: int = index, check_at: list[int] = check_at
        ) -> tuple[Transaction, list[int]]:
            tx = access.transaction()
            check_at[:] = [len(tx.operations)]
            if body.user_id is not None and body.user_id != access.principal.user_id:
                # The recipient must still be a member when the notification lands (the caller's
                # own membership is already the transaction's guard: one check per item).
                tx.check(keys.member_key(ws, body.user_id), exists())
            counters = _deliver(tx, ws, chunk, notification_id, fields, actor, at)
            if index == 0:
                audit.record(tx, ws, actor, "notification.created", "notification", notification_id, request_id,
                             details)  # fmt: skip
            return tx, counters

        try:
            chunk_id = _commit_in_order(first_id or new_id("ntf"), build, access.commit)
        except TransactionFailed as failure:
            if body.user_id not in (None, access.principal.user_id) and failure.failed_index() == check_at[0]:
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
    condition = attr_eq("type", type.value) if type is not None else None
    if read is False:
        page = get_store().query(
            keys.notification_unread_gsi(ws, user_id),
            index=keys.GSI1,
            limit=limit,
            start_key=start,
            newest_first=True,
            filter=condition,
        )
    else:
        if read is True:
            seen = Expr("attribute_exists(#read_at)", {"#read_at": "read_at"})
            condition = seen if condition is None else seen & condition
        page = get_store().query(
            keys.notification_inbox_pk(ws, user_id),
            sk_prefix=keys.notification_prefix(),
            limit=limit,
            start_key=start,
            newest_first=True,
            filter=condition,
        )
    return [_to_notification(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def unread_count(access: Access) -> UnreadCount:
    counter = get_store().get(keys.notification_counter_key(access.workspace_id, access.actor_id))
    return UnreadCount(count=max(0, int((counter or {}).get("count", 0))))


def _read_changes() -> Update:
    at = now()
    return Update(
        set={"read_at": iso(at), keys.TTL: epoch(at + READ_RETENTION)},
        remove=[keys.GSI1PK, keys.GSI1SK],
    )


def mark_read(access: Access, notification_id: str, request_id: str = "") -> Notification:
    """Mark one of the caller's notifications read; reading one already read changes nothing."""
    ws, user_id = access.workspace_id, access.actor_id
    if not _NOTIFICATION_ID.match(notification_id):
        raise NotFound(f"notification {notification_id[:40]} not found")
    key = keys.notification_key(ws, user_id, notification_id)
    current = get_store().get(key)
    if current is None:
        raise NotFound(f"notification {notification_id} not found")
    if current.get("read_at"):
        return _to_notification(current)
    changes = _read_changes()
    tx = access.transaction()
    tx.update(key, changes, exists() & _UNREAD)
    tx.update(keys.notification_counter_key(ws, user_id), _counter_change(ws, user_id, -1))
    audit.record(tx, ws, user_id, "notification.read", "notification", notification_id, request_id)
    try:
        access.commit(tx)
    except TransactionFailed:
        # Read meanwhile by another call of the same member: it is read, and counted once.
        latest = get_store().get(key)
        if latest is None:
            raise NotFound(f"notification {notification_id} not found") from None
        return _to_notification(latest)
    return _to_notification({**current, **changes.set})


def mark_all_read(access: Access, request_id: str = "") -> ReadAllResult:
    """Mark every unread notification of the caller read, in transactions that each take the
    counter down by exactly the number they mark. One read concurrently is left out and retried."""
    ws, user_id = access.workspace_id, access.actor_id
    updated = 0
    start: dict[str, Any] | None = None
    audited = False
    while updated < READ_ALL_MAX:
        page = get_store().query(
            keys.notification_unread_gsi(ws, user_id),
            index=keys.GSI1,
            limit=min(RECIPIENTS_PER_TRANSACTION, READ_ALL_MAX - updated),
            start_key=start,
        )
        pending = [str(item["id"]) for item in page.items]
        if pending:
            updated += _read_batch(access, pending, audit_row=None if audited else request_id)
            audited = True
        start = page.last_key
        if not start:
            break
    return ReadAllResult(updated=updated, count=unread_count(access).count)


def _read_batch(access: Access, notification_ids: list[str], audit_row: str | None) -> int:
    """Mark `notification_ids` read in one transaction; the ones someone else read first are
    dropped and the rest retried. Returns how many this call marked."""
    ws, user_id = access.workspace_id, access.actor_id
    pending = list(notification_ids)
    for _ in range(5):
        if not pending:
            return 0
        tx = access.transaction()
        first = len(tx.operations)
        for notification_id in pending:
            tx.update(keys.notification_key(ws, user_id, notification_id), _read_changes(), exists() & _UNREAD)
        tx.update(keys.notification_counter_key(ws, user_id), _counter_change(ws, user_id, -len(pending)))
        if audit_row is not None:
            audit.record(tx, ws, user_id, "notification.read_all", "inbox", user_id, audit_row)
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            lost = {
                i - first
                for i, reason in enumerate(failure.reasons)
                if reason == "ConditionalCheckFailed" and first <= i < first + len(pending)
            }
            pending = [n for i, n in enumerate(pending) if i not in lost]
            continue
        return len(pending)
    raise Conflict("notifications kept changing while they were being marked read; try again")
