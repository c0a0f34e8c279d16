"""Nothing answered is lost: kill -9 the local stack while clients create tasks, start it again on
the same data directory, and count the tasks that were answered 201 but are gone (target 0).

The periodic snapshot is pushed out to an hour, so what survives is what the journal kept.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.stackprocess import Client, StackProcess, signed_in

CLIENTS = 5
SECONDS_BEFORE_KILL = 6.0


@dataclass
class Crash:
    acknowledged: list[str] = field(default_factory=list)
    present: set[str] = field(default_factory=set)
    restart_seconds: float = 0.0

    @property
    def lost(self) -> list[str]:
        return [task for task in self.acknowledged if task not in self.present]


def _create_until_killed(client: Client, tasks: str, acknowledged: list[str], lock: threading.Lock) -> None:
    n = 0
    while True:
        try:
            answer = client.request("POST", tasks, {"title": f"crash task {n}"})
        except OSError:
            return  # the stack is gone
        if answer.status == 201:
            with lock:
                acknowledged.append(answer.json["data"]["id"])
        n += 1


def _all_tasks(client: Client, tasks: str) -> set[str]:
    found: set[str] = set()
    cursor = None
    while True:
        page = client.request("GET", f"{tasks}?limit=100" + (f"&cursor={cursor}" if cursor else ""))
        if page.status != 200:
            return found  # the session itself was lost: so was everything after it
        found.update(task["id"] for task in page.json["data"])
        cursor = page.json["meta"].get("next_cursor")
        if not cursor:
            return found


def run(clients: int = CLIENTS, seconds: float = SECONDS_BEFORE_KILL) -> Crash:
    crash = Crash()
    with tempfile.TemporaryDirectory(prefix="agentplane-crash-") as data_dir:
        stack = StackProcess(Path(data_dir), AGENTPLANE_SAVE_INTERVAL="3600").start()
        client, workspace = signed_in(stack.port, "crash")
        tasks = f"/api/v1/workspaces/{workspace}/tasks"
        lock = threading.Lock()
        workers = [
            threading.Thread(
                target=_create_until_killed, args=(Client(stack.port, client.token), tasks, crash.acknowledged, lock)
            )
            for _ in range(clients)
        ]
        for worker in workers:
            worker.start()
        time.sleep(seconds)
        stack.kill()
        for worker in workers:
            worker.join(timeout=30)
        started = time.monotonic()
        again = StackProcess(Path(data_dir)).start()
        crash.restart_seconds = time.monotonic() - started
        try:
            crash.present = _all_tasks(Client(again.port, client.token), tasks)
        finally:
            again.stop()
    return crash


def report() -> bool:
    crash = run()
    print(f"crash: {CLIENTS} clients create tasks, kill -9 after {SECONDS_BEFORE_KILL:.0f} s, restart on the same data")
    print(
        f"  answered 201    {len(crash.acknowledged)}; present after the restart {len(crash.present)}; "
        f"lost {len(crash.lost)} (target 0) {'ok' if not crash.lost else 'MISSED'}"
    )
    print(f"  restart         {crash.restart_seconds:.1f} s to answer again, replaying the journal")
    return not crash.lost
