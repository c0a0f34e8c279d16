"""Who is calling, checked on every request: revoking a token, logging out, removing a member or
deleting a workspace refuses the very next call, reads included.

The function reads the token's record (and, on a workspace's routes, the membership and the
workspace) itself on every call; no cache stands between a revocation and the next request. What
a container does remember is what each token it has seen spoke for (`_seen`), so that a read can
go ahead on that assumption while its check travels with the route's first DynamoDB read (the
store's deferred check: in the same BatchGetItem as a GetItem, beside a Query). A read sees no data
before the check passed. If the check finds anything changed (a revoked token, a new role, a
deleted workspace), the request is answered again from scratch with what the check read, so the
caller gets exactly the answer a fresh lookup gives. Writes check first, then run.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from threading import Lock
from typing import Any

from agentplane import keys
from agentplane.auth import tokens
from agentplane.auth.principal import Principal
from agentplane.auth.secrets import hash_secret
from agentplane.entities.base import Entity
from agentplane.entities.tokens import TokenItem
from agentplane.entities.workspaces import MemberItem, WorkspaceItem
from agentplane.errors import Unauthorized
from agentplane.ids import is_path_id
from agentplane.keys import Key
from agentplane.store import DeferredCheck, get_store

# Tokens whose principal a container remembers; each entry is a few hundred bytes.
MAX_SEEN_TOKENS = 2048
MAX_SECRET_LENGTH = 512
MISSING = "a bearer token is required: send Authorization: Bearer <token>"
REFUSED = "the token is invalid, expired or revoked"
# Methods answered on an assumed principal while the check rides along with their first read.
READ_METHODS = frozenset({"GET", "HEAD"})


class AccessChanged(Exception):
    """The token or membership a read assumed is no longer what the table says."""


@dataclass(frozen=True)
class Caller:
    """The outcome of authenticating one request."""

    principal: Principal | None = None
    refusal: str = MISSING  # why there is no principal
    # For a read on an assumed principal: the check to send with the request's first read.
    check: DeferredCheck | None = None

    def require(self) -> Principal:
        if self.principal is None:
            raise Unauthorized(self.refusal)
        return self.principal


# Set by a failed check even if the route swallowed the exception: the answer is never sent.
_changed: contextvars.ContextVar[bool] = contextvars.ContextVar("access_changed", default=False)

_seen: OrderedDict[tuple[str, str | None], Principal] = OrderedDict()
_seen_lock = Lock()


def bearer_secret(headers: Mapping[str, Any] | None) -> str:
    lowered = {str(k).lower(): v for k, v in (headers or {}).items()}
    scheme, _, value = str(lowered.get("authorization") or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def authenticate(event: Mapping[str, Any], *, assume: bool = True) -> Caller:
    """The request's caller. With `assume`, a read by a token this container has seen goes ahead
    as that principal, its check to be handed to the store (`defer_check(caller.check)`), which
    raises AccessChanged if it fails."""
    secret = bearer_secret(event.get("headers"))
    if not secret:
        return Caller()
    if len(secret) > MAX_SECRET_LENGTH:
        return Caller(refusal=REFUSED)
    token_hash = hash_secret(secret)
    workspace_id = (event.get("pathParameters") or {}).get("ws")
    if workspace_id is not None and not is_path_id(workspace_id):
        workspace_id = None  # no such workspace: the route answers 404 without reading it
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method", "")).upper()
    seen_key = (token_hash, workspace_id)
    with _seen_lock:
        assumed = _seen.get(seen_key)
    if assumed is not None and assume:
        check = DeferredCheck(_checked(assumed), lambda found: _confirm(assumed, found))
        if method in READ_METHODS:
            return Caller(assumed, check=check)
        if _confirm_before_write(check):
            return Caller(assumed)
    try:
        principal = _read(token_hash, workspace_id)
    except Unauthorized as refused:
        _forget(token_hash)
        return Caller(refusal=refused.detail)
    _remember(seen_key, principal)
    return Caller(principal)


def _confirm_before_write(check: DeferredCheck) -> bool:
    """A write checks before it runs: one BatchGetItem. False when the caller has changed."""
    try:
        check.verify(get_store().read_each(check.wanted))
    except AccessChanged:
        take_changed()
        return False
    return True


def _checked(principal: Principal) -> list[tuple[type[Entity], Key]]:
    """The token, and on a workspace's routes the workspace and the caller's membership of it."""
    wanted: list[tuple[type[Entity], Key]] = [(TokenItem, keys.token_key(principal.token_hash))]
    ws = principal.checked_workspace
    if ws:
        wanted.append((WorkspaceItem, keys.workspace_key(ws)))
        if principal.user_id:
            wanted.append((MemberItem, keys.member_key(ws, principal.user_id)))
    return wanted


def _principal_from(
    token: TokenItem, ws: str | None, workspace: WorkspaceItem | None, member: MemberItem | None
) -> Principal:
    principal = tokens.principal_of(token)
    if not ws:
        return principal
    live = workspace is not None and workspace.deleted_at is None
    if principal.kind == "agent_key":
        if principal.workspace_id != ws:
            return principal  # another workspace's path: workspace_access answers 404
        if not live:
            raise Unauthorized(REFUSED)  # its workspace was deleted (which revokes its keys too)
        return replace(principal, checked_workspace=ws)
    roles = {ws: member.role} if live and member is not None else {}
    if principal.kind == "api_key" and principal.workspace_id == ws and not roles:
        # The key's creator left the workspace (or it was deleted): the key dies with it.
        raise Unauthorized(REFUSED)
    return replace(principal, memberships=roles, checked_workspace=ws)


def _read(token_hash: str, path_workspace: str | None) -> Principal:
    """The principal as the table has it now: the token, then its workspace's rows."""
    store = get_store()
    token = store.read(TokenItem, keys.token_key(token_hash))
    if not tokens.is_live(token):
        raise Unauthorized(REFUSED)
    assert token is not None
    tokens.note_use(token)
    identity = tokens.principal_of(token)
    ws = path_workspace or identity.workspace_id
    if not ws:
        return identity
    workspace, *member = store.read_each(_checked(replace(identity, checked_workspace=ws))[1:])
    return _principal_from(token, ws, WorkspaceItem.found(workspace), MemberItem.found(member[0] if member else None))


def _confirm(assumed: Principal, found: list[Entity | None]) -> None:
    """The deferred check: the rows read with the route's first read must say what was assumed."""
    token = TokenItem.found(found[0])
    ws = assumed.checked_workspace
    workspace = WorkspaceItem.found(found[1]) if len(found) > 1 else None
    member = MemberItem.found(found[2]) if len(found) > 2 else None
    try:
        if not tokens.is_live(token):
            raise Unauthorized(REFUSED)
        assert token is not None
        now = _principal_from(token, ws, workspace, member)
    except Unauthorized:
        now = None
    if now is None or not now.same_token(assumed) or now.memberships != assumed.memberships:
        _changed.set(True)
        raise AccessChanged
    assert token is not None
    tokens.note_use(token)


def take_changed() -> bool:
    """Whether a check failed during this answer (and clear it for the next one)."""
    changed = _changed.get()
    _changed.set(False)
    return changed


def _remember(seen_key: tuple[str, str | None], principal: Principal) -> None:
    with _seen_lock:
        _seen[seen_key] = principal
        _seen.move_to_end(seen_key)
        while len(_seen) > MAX_SEEN_TOKENS:
            _seen.popitem(last=False)


def _forget(token_hash: str) -> None:
    with _seen_lock:
        for seen_key in [k for k in _seen if k[0] == token_hash]:
            del _seen[seen_key]


def forget_all() -> None:
    """Drop every remembered principal (tests, and the local stack's resets)."""
    with _seen_lock:
        _seen.clear()
