"""Billing: the tier catalog, subscriptions through Stripe, plan limits, and the token ledger."""
