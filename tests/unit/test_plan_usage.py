"""The condition that keeps a plan limit beside its counter: no limit stored means the default
tier's, NO_LIMIT means none, and a count never reckoned has no room until it is."""

from __future__ import annotations

import pytest

WS = "ws_plan"


@pytest.mark.parametrize(
    ("stored", "default", "members", "fits"),
    [
        (None, 5, 4, True),  # the default tier's limit, with room
        (None, 5, 5, False),  # the default tier's limit, reached
        (None, None, 10_000, True),  # a default tier without a limit
        (3, 5, 3, False),  # a stored limit wins over the default tier's
        (10, 5, 7, True),
        (-1, 5, 10_000, True),  # NO_LIMIT
        (10, 5, None, False),  # never reckoned: no room until it is
    ],
)
def test_one_more_member_fits_under_the_limit_kept_beside_the_count(store, stored, default, members, fits) -> None:
    from agentplane import keys
    from agentplane.entities.plan_usage import PlanUsageItem
    from agentplane.store import ConditionFailed

    store.save(PlanUsageItem(workspace_id=WS, members=members, member_limit=stored))
    try:
        after = store.adjust(
            PlanUsageItem,
            keys.plan_usage_key(WS),
            [PlanUsageItem.members.add(1)],
            PlanUsageItem.room_for_member(default),
        )
    except ConditionFailed:
        assert not fits
    else:
        assert fits and after.members == members + 1
