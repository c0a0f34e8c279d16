"""Realtime: WebSocket connections, channel subscriptions, and the table stream's fan-out to them.

- `connections`: a connection is checked once, on `$connect`, with the same bearer tokens as the
  HTTP API, and remembered for two hours (API Gateway's longest connection).
- `channels` and `subscriptions`: each subscription is stored twice, under its channel (so fan-out
  is one Query per channel) and under its connection (so a disconnect, or a post answered 410
  Gone, removes every trace in one Query). Membership and the token are re-checked on every
  subscribe, never trusted from connect time.
- `gate`: membership and the token are checked again when pushing (once per connection per fan-out
  batch): a member removed, or a token revoked or expired, after subscribing gets no more pushes
  and loses the subscription.
- `delivery`: run and notification channels deliver each event exactly once, in id order: the
  subscription keeps a cursor (`delivered_through`: a run event id, or a notification id), and
  whoever delivers a range (the subscribe's `since` replay or the stream fan-out) first moves the
  cursor over that range with a conditional write.
- `fanout`: a fan-out that finds the cursor behind the item it carries fills the gap from the
  table, so nothing written while a subscription was being set up is skipped. (An inbox's
  notifications are written in id order, see logic/notifications.py, so "after the cursor" is
  exact.) The `workspace` channel is live only, without a cursor: its events are numbered per run.
- `posting`: the management API that posts to connections.
"""

from agentplane.logic.realtime.connections import CONNECTION_TTL_SECONDS, Connection, connect, disconnect
from agentplane.logic.realtime.delivery import notification_push, run_event_push
from agentplane.logic.realtime.fanout import FanoutResult, fan_out
from agentplane.logic.realtime.gate import PushGate
from agentplane.logic.realtime.posting import (
    ConnectionGone,
    DeliveryFailed,
    Poster,
    control,
    management_endpoint,
)
from agentplane.logic.realtime.subscriptions import ping, subscribe, unsubscribe

__all__ = [
    "CONNECTION_TTL_SECONDS",
    "Connection",
    "ConnectionGone",
    "DeliveryFailed",
    "FanoutResult",
    "Poster",
    "PushGate",
    "connect",
    "control",
    "disconnect",
    "fan_out",
    "management_endpoint",
    "notification_push",
    "ping",
    "run_event_push",
    "subscribe",
    "unsubscribe",
]
