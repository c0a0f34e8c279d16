"""What a task's own transaction keeps in step with the task item: the items that point at it and
the counters it counts in (see `entities.tasks` and `entities.task_counters`).

Every link and figure is what the live tasks say now. A change removes the links the task's old
version implied and writes those its new version implies, and moves each counter by what the new
version contributes less what the old one did, so a task moved to another sprint, reopened,
re-pointed, reassigned or deleted takes its counts with it. A done task counts on the day of its
`completed_at`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agentplane import keys
from agentplane.entities.base import Entity
from agentplane.entities.task_counters import CounterItem
from agentplane.entities.tasks import StoryItem, StoryTaskItem, TaskItem
from agentplane.store import Transaction

Item = dict[str, Any]
Change = tuple[TaskItem | None, TaskItem | None]  # (before, after); None: not there
Links = Callable[[TaskItem], list[Entity]]

# The name of the check, in a task's transaction, that the story it joins still exists.
STORY_CHECK = "story"


def keep_in_step(tx: Transaction, changes: Sequence[Change], *, check_story: bool = True) -> None:
    """Add to `tx` everything that follows the tasks of `changes` from before to after: their
    links, and each counter once with the sum of their moves (a transaction may touch an item only
    once, and counter items are shared)."""
    link_references(tx, changes, check_story=check_story)
    count(tx, changes)
    link_listings(tx, changes)


def link_references(tx: Transaction, changes: Sequence[Change], *, check_story: bool = True) -> None:
    """The links of what each task refers to (its blockers, its story). `check_story`: a task
    joining a story requires the story (off when the story is written in the same transaction);
    the first such check is named STORY_CHECK."""
    required: set[str] = set()
    for before, after in changes:
        for link in _relink(tx, before, after, TaskItem.reference_links):
            if check_story and isinstance(link, StoryTaskItem) and link.story_id not in required:
                story_key = keys.story_key(link.workspace_id, link.story_id)
                tx.require(StoryItem, story_key, StoryItem.present(), name=None if required else STORY_CHECK)
                required.add(link.story_id)


def link_listings(tx: Transaction, changes: Sequence[Change]) -> None:
    """The links that list each task (its agent's todo queue, the done tasks by time)."""
    for before, after in changes:
        _relink(tx, before, after, TaskItem.listing_links)


def _relink(tx: Transaction, before: TaskItem | None, after: TaskItem | None, links: Links) -> list[Entity]:
    """Remove the links only `before` implies, write those only `after` implies; answers the new ones."""
    was = {_pair(link): link for link in (links(before) if before is not None else [])}
    now = {_pair(link): link for link in (links(after) if after is not None else [])}
    for pair in sorted(was.keys() - now.keys()):
        tx.discard(type(was[pair]), keys.key(*pair))
    joined = [now[pair] for pair in now if pair not in was]
    for link in joined:
        tx.save(link)
    return joined


def _pair(entity: Entity) -> tuple[str, str]:
    entity.stamp()
    return entity.PK, entity.SK


def count(tx: Transaction, changes: Sequence[Change]) -> None:
    """Each counter item the tasks count in, moved once by the sum of their moves."""
    counters: dict[tuple[str, str], CounterItem] = {}
    moved: dict[tuple[str, str], Counter[str]] = {}
    for before, after in changes:
        for sign, task in ((-1, before), (1, after)):
            for pair, tally in (task.tallies() if task is not None else {}).items():
                counters.setdefault(pair, tally.counter)
                total = moved.setdefault(pair, Counter())
                for name, value in tally.counts.items():
                    total[name] += sign * value
    for pair in sorted(moved):
        deltas = {name: delta for name, delta in moved[pair].items() if delta}
        if deltas:
            counter = counters[pair]
            tx.upsert(type(counter), counter.key, counter.add_counts(deltas))


# --- tasks as plain items (workspace import) ------------------------------------------------------


def _task(item: Mapping[str, Any] | None) -> TaskItem | None:
    return TaskItem.from_item(item) if item is not None else None


def add_link_writes(tx: Transaction, ws: str, old: Item | None, new: Item | None) -> None:
    """The task's links that list it (its agent's todo queue, the done tasks by time), for a task
    given as plain items (`ws`: the workspace both belong to)."""
    link_listings(tx, [(_task(old), _task(new))])


def add_summed_counter_writes(tx: Transaction, ws: str, changes: list[tuple[Item | None, Item | None]]) -> None:
    """The counter updates of several task changes (old, new) given as plain items, written
    together: one update per counter item, carrying the sum of every change's moves."""
    count(tx, [(_task(old), _task(new)) for old, new in changes])
