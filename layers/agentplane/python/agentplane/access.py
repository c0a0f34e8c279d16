"""Workspace access: is the caller a member, with which role, and may this token do this?

Every request reads its token and its membership of the path's workspace afresh (see
agentplane.auth.caller), so a revoked token or a removed member is refused on the very next call.
Writes also re-check both inside their own transaction, so a member removed while the write is in
flight cannot change anything. An agent key has no membership: its writes re-check instead that
its workspace still exists (a deleted workspace's keys are also revoked, see
logic.workspaces.delete_workspace).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentplane import audit, keys
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import AGENT_SCOPES, ROLE_SCOPES, Role, roles_with
from agentplane.entities.tokens import TokenItem
from agentplane.entities.workspaces import MemberItem, WorkspaceItem
from agentplane.errors import Forbidden, MissingScope, NotFound, Unauthorized
from agentplane.store import Transaction, TransactionFailed, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition


@dataclass(frozen=True)
class Access:
    principal: Principal
    workspace_id: str
    role: Role
    scope: str | None
    # The API Gateway request id, recorded with every audit event this access writes.
    request_id: str = ""

    @property
    def actor_id(self) -> str:
        return self.principal.user_id or self.principal.id

    def require(self, scope: str) -> None:
        _check_scope(self.principal, self.role, scope)

    def may(self, scope: str) -> bool:
        """Whether `require(scope)` would pass: for answers that show only what the caller may see."""
        try:
            self.require(scope)
        except Forbidden:
            return False
        return True

    def transaction(self) -> Transaction:
        """A transaction whose first two operations re-check the caller's right to write: the
        token is still live, and the membership still grants the scope (for an agent key, which
        has none: the workspace has not been deleted)."""
        tx = get_store().transaction()
        self.check_token(tx)
        self.check_membership(tx)
        return tx

    def check_token(self, tx: Transaction) -> None:
        """Add the guard that the caller's token is still live (`TOKEN_GUARD`). A write to the
        token's own record carries this condition instead, under the same name: a transaction
        may hold one operation per item."""
        tx.require(TokenItem, keys.token_key(self.principal.token_hash), TokenItem.live(), name=TOKEN_GUARD)

    def check_membership(self, tx: Transaction) -> None:
        """Add the guard that the caller may still write here (`MEMBERSHIP_GUARD`): the membership
        grants the scope, or for an agent key the workspace is not deleted. A write to the
        caller's own membership carries `membership_condition()` instead, under the same name."""
        if self.principal.kind == "agent_key":
            tx.require(
                WorkspaceItem, keys.workspace_key(self.workspace_id), WorkspaceItem.live(), name=MEMBERSHIP_GUARD
            )
        else:
            assert self.principal.user_id is not None
            member_key = keys.member_key(self.workspace_id, self.principal.user_id)
            tx.require(MemberItem, member_key, self.membership_condition(), name=MEMBERSHIP_GUARD)

    def membership_condition(self) -> Condition:
        """What the caller's membership must still say: a role that grants the scope."""
        allowed = roles_with(self.scope) if self.scope else [r.value for r in Role]
        return MemberItem.with_role(*allowed)

    def audit(
        self,
        tx: Transaction,
        action: str,
        target_type: str,
        target_id: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record `action` in the workspace's audit trail, in the same transaction as the change,
        as done by this caller in this request."""
        audit.record(tx, self.workspace_id, self.actor_id, action, target_type, target_id, self.request_id, details)

    def commit(self, tx: Transaction) -> None:
        """Commit; a lost guard means the token was revoked or the caller no longer belongs here."""
        try:
            tx.commit()
        except TransactionFailed as failure:
            # Only a failed condition means "revoked" or "not a member"; a TransactionConflict on a
            # guard (a concurrent write by the same caller) is re-raised for the caller to retry.
            if failure.reason(TOKEN_GUARD) == "ConditionalCheckFailed":
                raise Unauthorized("the token is invalid, expired or revoked") from failure
            if failure.reason(MEMBERSHIP_GUARD) == "ConditionalCheckFailed":
                raise self._membership_lost() from failure
            raise

    def _membership_lost(self) -> Forbidden | NotFound:
        """Why the membership guard failed: a role changed under the write (403 naming the scope),
        or no membership (or workspace) at all any more (404, as for any non-member)."""
        if self.principal.user_id and self.scope:
            member = get_store().read(MemberItem, keys.member_key(self.workspace_id, self.principal.user_id))
            if member is not None:
                role = Role(member.role)
                return Forbidden(
                    f"the '{role.value}' role cannot use '{self.scope}'", required_scope=self.scope, role=role.value
                )
        return NotFound("workspace not found")


# The names of the two guards every write of an Access starts with.
TOKEN_GUARD, MEMBERSHIP_GUARD = "caller_token", "caller_membership"


def _check_scope(principal: Principal, role: Role, scope: str) -> None:
    granted = AGENT_SCOPES if principal.kind == "agent_key" else ROLE_SCOPES[role]
    if scope not in granted:
        raise Forbidden(f"the '{role.value}' role cannot use '{scope}'", required_scope=scope, role=role.value)
    if not principal.has_scope(scope):
        raise MissingScope(scope)


def workspace_access(
    principal: Principal, workspace_id: str, scope: str | None = None, *, request_id: str = ""
) -> Access:
    """Resolve the caller's role in `workspace_id`; a non-member gets 404 so ids do not leak."""
    if principal.workspace_id and principal.workspace_id != workspace_id:
        raise NotFound("workspace not found")
    if principal.kind == "agent_key":
        role = Role.member
    else:
        role_name = principal.memberships.get(workspace_id)
        if role_name is None and principal.checked_workspace == workspace_id:
            raise NotFound("workspace not found")  # this request read the membership: there is none
        if role_name is None:
            # A workspace this request did not check up front (one found through an item, say).
            assert principal.user_id is not None
            member = get_store().read(MemberItem, keys.member_key(workspace_id, principal.user_id))
            if member is None:
                raise NotFound("workspace not found")
            role_name = member.role
        role = Role(role_name)
    if scope:
        _check_scope(principal, role, scope)
    return Access(principal=principal, workspace_id=workspace_id, role=role, scope=scope, request_id=request_id)
