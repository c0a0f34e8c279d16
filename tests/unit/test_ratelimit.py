"""The strict limits (auth per IP, run-start per user) hold over any 60 seconds, not per clock minute."""

from __future__ import annotations

import threading

import pytest

from agentplane import ratelimit
from agentplane.errors import RateLimited


@pytest.fixture
def clock(stack, monkeypatch):
    now = {"t": 1_000_000.0}
    monkeypatch.setattr(ratelimit, "_now", lambda: now["t"])
    return now


def test_calls_straddling_a_minute_boundary_still_count_together(clock):
    clock["t"] = 1_000_019.0  # 41 s before a clock minute ends (1_000_020 is a multiple of 60)
    for _ in range(3):
        ratelimit.hit_exact("run-start:usr_a", 6)
    clock["t"] = 1_000_019.9
    for _ in range(3):
        ratelimit.hit_exact("run-start:usr_a", 6)
    clock["t"] = 1_000_020.1  # a new clock minute, but six calls in the last second
    with pytest.raises(RateLimited) as refused:
        ratelimit.hit_exact("run-start:usr_a", 6)
    assert refused.value.headers["Retry-After"] == "59"  # when the first call leaves the window
    assert refused.value.headers["X-RateLimit-Remaining"] == "0"


def test_a_call_is_admitted_again_once_the_oldest_leaves_the_window(clock):
    for _ in range(6):
        ratelimit.hit_exact("auth:10.0.0.9", 6)
    clock["t"] += 30
    with pytest.raises(RateLimited):
        ratelimit.hit_exact("auth:10.0.0.9", 6)
    clock["t"] += 30.5
    admitted = ratelimit.hit_exact("auth:10.0.0.9", 6)
    assert admitted.remaining == 5  # the six old calls left the window; this one is in it
    assert admitted.reset == 1_000_121


def test_buckets_are_independent(clock):
    for _ in range(6):
        ratelimit.hit_exact("run-start:usr_a", 6)
    assert ratelimit.hit_exact("run-start:usr_b", 6).remaining == 5


def test_concurrent_callers_cannot_exceed_the_limit(clock):
    admitted: list[int] = []
    refused: list[int] = []

    def call() -> None:
        try:
            admitted.append(ratelimit.hit_exact("run-start:usr_c", 6).remaining)
        except RateLimited:
            refused.append(1)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 6 and len(refused) == 14
    assert sorted(admitted) == [0, 1, 2, 3, 4, 5]
