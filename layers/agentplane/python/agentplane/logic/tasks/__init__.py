"""Tasks (Toban's fields, Orkosi's list filters): creation and changes (`editing`), the review
workflow (`review`), the list and `next` (`listing`), dependencies between tasks
(`dependencies`), the status move every transition makes (`transition`), reads by id and
reference checks (`reads`), and the commit their transactions share (`commit`). Each change is
audited in its own transaction, which also keeps the task's links and counters in step with it
(`logic.task_indexes`).
"""

from agentplane.logic.tasks.commit import commit
from agentplane.logic.tasks.dependencies import add_task_writes, blockers_done, unblock_children
from agentplane.logic.tasks.editing import create_task, delete_task, infer_type, new_task, new_task_item, update_task
from agentplane.logic.tasks.listing import get_task, list_tasks, next_task, resolve_assignee
from agentplane.logic.tasks.reads import get_tasks, live_tasks_by_id, load_live, require_tasks, require_version
from agentplane.logic.tasks.review import approve_task, reject_task, review_action, submit_review_report

__all__ = [
    "add_task_writes",
    "approve_task",
    "blockers_done",
    "commit",
    "create_task",
    "delete_task",
    "get_task",
    "get_tasks",
    "infer_type",
    "list_tasks",
    "live_tasks_by_id",
    "load_live",
    "new_task",
    "new_task_item",
    "next_task",
    "reject_task",
    "require_tasks",
    "require_version",
    "resolve_assignee",
    "review_action",
    "submit_review_report",
    "unblock_children",
    "update_task",
]
