"""A working day in miniature: does `make dev` stay fast and bounded in memory as data grows?

A fresh stack in its own process; one account creates, patches and reads back a task per round,
over HTTP. Printed: the median round of the last tenth over the first tenth (target ≤ 1.2×); how
much the server's RSS grew, and how much of that is not the data itself (target ≤ 200 MB), where
the data's own size is the RSS of a second stack that restored the same data from disk; listing
50 tasks near the start and at the end; and errors (target 0).
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.stackprocess import Client, StackProcess, signed_in

ROUNDS = 1500
RATIO_TARGET = 1.2
GROWTH_TARGET_MB = 200.0


@dataclass
class Soak:
    rounds: int
    round_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    list_start_ms: float = 0.0
    list_end_ms: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_restored_mb: float = 0.0
    throttled: int = 0

    @property
    def first_tenth_ms(self) -> float:
        return statistics.median(self.round_seconds[: max(1, self.rounds // 10)]) * 1000

    @property
    def last_tenth_ms(self) -> float:
        return statistics.median(self.round_seconds[-max(1, self.rounds // 10) :]) * 1000

    @property
    def ratio(self) -> float:
        return self.last_tenth_ms / self.first_tenth_ms

    @property
    def growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_start_mb

    @property
    def growth_beyond_data_mb(self) -> float:
        return self.rss_end_mb - self.rss_restored_mb


def _list_ms(client: Client, tasks: str) -> float:
    answers = [client.request("GET", f"{tasks}?limit=50") for _ in range(5)]
    return statistics.median(a.seconds for a in answers) * 1000


def run(rounds: int = ROUNDS) -> Soak:
    soak = Soak(rounds)
    with tempfile.TemporaryDirectory(prefix="agentplane-soak-") as data_dir:
        stack = StackProcess(Path(data_dir)).start()
        try:
            client, workspace = signed_in(stack.port, "soak")
            tasks = f"/api/v1/workspaces/{workspace}/tasks"
            soak.rss_start_mb = stack.rss_mb()
            for n in range(rounds):
                created = client.request("POST", tasks, {"title": f"Soak task {n}", "description": "a working day"})
                if created.status != 201:
                    soak.errors.append(f"create {created.status}")
                    continue
                task = created.json["data"]
                patched = client.request("PATCH", f"{tasks}/{task['id']}", {"priority": "p1"})
                read = client.request("GET", f"{tasks}/{task['id']}")
                soak.errors += [
                    f"{what} {a.status}" for what, a in (("patch", patched), ("get", read)) if a.status != 200
                ]
                soak.round_seconds.append(created.seconds + patched.seconds + read.seconds)
                if n == max(50, rounds // 10):
                    soak.list_start_ms = _list_ms(client, tasks)
            soak.list_end_ms = _list_ms(client, tasks)
            soak.throttled = client.throttled
            soak.rss_end_mb = stack.rss_mb()
        finally:
            stack.stop()
        restored = StackProcess(Path(data_dir)).start()
        try:
            soak.rss_restored_mb = restored.rss_mb()
        finally:
            restored.stop()
    return soak


def report(rounds: int = ROUNDS) -> bool:
    soak = run(rounds)
    ratio_ok = soak.ratio <= RATIO_TARGET
    growth_ok = soak.growth_beyond_data_mb <= GROWTH_TARGET_MB
    print(f"soak: {rounds} rounds of create + patch + get of a task over HTTP, on a fresh `make dev`")
    print(
        f"  round median    first tenth {soak.first_tenth_ms:.0f} ms, last tenth {soak.last_tenth_ms:.0f} ms: "
        f"{soak.ratio:.2f}x "
        f"(target <= {RATIO_TARGET}x) {'ok' if ratio_ok else 'MISSED'}"
    )
    print(
        f"  server RSS      {soak.rss_start_mb:.0f} -> {soak.rss_end_mb:.0f} MB (+{soak.growth_mb:.0f} MB); "
        f"the same data restored by a fresh stack: {soak.rss_restored_mb:.0f} MB"
    )
    print(
        f"  beyond the data {soak.growth_beyond_data_mb:.0f} MB (target <= {GROWTH_TARGET_MB:.0f} MB) "
        f"{'ok' if growth_ok else 'MISSED'}"
    )
    print(f"  list 50 tasks   {soak.list_start_ms:.0f} ms near the start, {soak.list_end_ms:.0f} ms at the end")
    print(f"  throttled       {soak.throttled} answers 429 (600 calls a minute per caller), waited as told")
    print(f"  errors          {len(soak.errors)} {'ok' if not soak.errors else 'MISSED ' + ', '.join(soak.errors[:5])}")
    return ratio_ok and growth_ok and not soak.errors
