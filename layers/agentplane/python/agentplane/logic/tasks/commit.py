"""Committing a task's transaction."""

from __future__ import annotations

from botocore.exceptions import ClientError

from agentplane.access import Access
from agentplane.errors import Unprocessable
from agentplane.store import Transaction, TransactionFailed, retrying

# Concurrent changes that touch the same counter item collide (TransactionConflict); the same
# transaction is sent again, as its conditions still decide who wins.
_CONFLICT_ATTEMPTS = 6
_TOO_LARGE = "the task would exceed the maximum stored size; shorten its texts"


def _collided(failure: Exception) -> bool:
    return isinstance(failure, TransactionFailed) and failure.only_conflicts()


def commit(access: Access, tx: Transaction) -> None:
    """Commit, sending the transaction again while it only collides with others; a task grown
    past the table's 400 KB item limit is the caller's input, so a 422."""
    try:
        retrying(lambda: access.commit(tx), retry_if=_collided, attempts=_CONFLICT_ATTEMPTS)
    except TransactionFailed as failure:
        if "ValidationError" in failure.reasons:
            raise Unprocessable(_TOO_LARGE) from failure
        raise
    except ClientError as error:
        problem = error.response.get("Error", {})
        if problem.get("Code") == "ValidationException" and "size" in str(problem.get("Message", "")).lower():
            raise Unprocessable(_TOO_LARGE) from error
        raise
