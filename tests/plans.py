"""Putting a workspace on a tier the way the billing webhook does: its subscription and the tier's
limits written in one transaction. Tests that need more room than the default (free) tier gives
use it; the others keep the default tier's limits."""

from __future__ import annotations

from typing import Any


def put_on_tier(workspace: dict[str, Any] | str, tier_id: str = "business") -> None:
    from agentplane.entities.billing import SubscriptionItem
    from agentplane.ids import iso
    from agentplane.logic.billing import catalog, limits
    from agentplane.store import get_store

    ws = workspace if isinstance(workspace, str) else workspace["id"]
    tier = catalog.tier(tier_id)
    at = iso()
    subscription = SubscriptionItem(
        workspace_id=ws,
        tier=tier.id,
        status="active",
        stripe_customer_id=f"cus_{ws}",
        stripe_subscription_id=f"sub_{ws}",
        created_at=at,
        updated_at=at,
    )
    tx = get_store().transaction()
    tx.save(subscription)
    limits.set_tier(tx, ws, tier)
    tx.commit()
