"""The tier catalog and token packages: one document, `pricing.json` beside this module, or the
JSON in the `BILLING_CATALOG` setting when an operator prices things otherwise. Everything that
needs a tier's price, tokens or limits reads it here."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from agentplane.errors import Unprocessable
from agentplane.models.billing import Pricing, Tier, TokenPackage
from agentplane.settings import get_settings

_DEFAULT = Path(__file__).with_name("pricing.json")


@lru_cache(maxsize=4)
def _parsed(document: str) -> Pricing:
    pricing = Pricing.model_validate_json(document)
    ids = [tier.id for tier in pricing.tiers]
    if len(set(ids)) != len(ids) or pricing.default_tier not in ids:
        raise ValueError("the billing catalog needs distinct tier ids and its default tier among them")
    return pricing


def pricing() -> Pricing:
    document = get_settings().billing_catalog or _DEFAULT.read_text()
    return _parsed(document)


def tiers() -> list[Tier]:
    return pricing().tiers


def find_tier(tier_id: str | None) -> Tier | None:
    return next((tier for tier in tiers() if tier.id == tier_id), None)


def tier(tier_id: str) -> Tier:
    """The tier named `tier_id`; an unknown name is bad input (422 naming the tiers there are)."""
    found = find_tier(tier_id)
    if found is None:
        names = ", ".join(t.id for t in tiers())
        raise Unprocessable(f"no tier '{tier_id}'; the tiers are {names}", field="tier")
    return found


def default_tier() -> Tier:
    """The tier of a workspace that has no subscription (or whose subscription ended)."""
    return tier(pricing().default_tier)


def package(package_id: str) -> TokenPackage:
    found = next((p for p in pricing().token_packages if p.id == package_id), None)
    if found is None:
        names = ", ".join(p.id for p in pricing().token_packages)
        raise Unprocessable(f"no token package '{package_id}'; the packages are {names}", field="package_id")
    return found
