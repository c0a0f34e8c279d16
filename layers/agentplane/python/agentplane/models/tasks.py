"""Tasks, their review workflow, stories and user tasks (Toban's fields, Orkosi's list filters)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from agentplane.models.common import Input, ListQuery, LongText, Output

Title = Annotated[str, StringConstraints(min_length=1, max_length=300)]
AgentName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=50)]
# Ids as minted (`agentplane.ids.new_id`): anything else names no task, story or user task.
TASK_ID_PATTERN = r"^task_[0-9a-z]{26}$"
STORY_ID_PATTERN = r"^story_[0-9a-z]{26}$"
USER_TASK_ID_PATTERN = r"^utask_[0-9a-z]{26}$"
TaskRef = Annotated[str, StringConstraints(pattern=TASK_ID_PATTERN)]
StoryRef = Annotated[str, StringConstraints(pattern=STORY_ID_PATTERN)]
Commits = Annotated[str, StringConstraints(max_length=2000)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=5000)]
ReportText = Annotated[str, StringConstraints(max_length=10000)]

# A task's dependencies are link items written in the task's own transaction, so their number is
# bounded by what one transaction can hold (changing all of them at once stays under 100 writes).
MAX_BLOCKERS = 40
# Sprint numbers are small integers; the bound keeps every number storable as given.
MAX_SPRINT = 1_000_000


class TaskStatus(StrEnum):
    todo = "todo"
    in_progress = "in_progress"
    review = "review"
    done = "done"
    blocked = "blocked"


class TaskPriority(StrEnum):
    p0 = "p0"
    p1 = "p1"
    p2 = "p2"
    p3 = "p3"


class TaskType(StrEnum):
    feature = "feature"
    bug = "bug"
    chore = "chore"
    test = "test"
    docs = "docs"
    refactor = "refactor"
    research = "research"


class TaskCreate(Input):
    title: Title
    description: LongText = ""
    owner: AgentName | None = None
    assignee: AgentName | None = None
    priority: TaskPriority = TaskPriority.p1
    status: TaskStatus = TaskStatus.todo
    type: TaskType | None = None
    sprint: int | None = Field(default=None, ge=0, le=MAX_SPRINT)
    branch: Annotated[str, StringConstraints(max_length=200)] | None = None
    labels: list[Label] = Field(default_factory=list, max_length=20)
    blocks: list[TaskRef] = Field(default_factory=list, max_length=50)
    blocked_by: list[TaskRef] = Field(default_factory=list, max_length=MAX_BLOCKERS)
    context_notes: LongText | None = None
    target_repo: Annotated[str, StringConstraints(max_length=300)] | None = None
    parent_task: TaskRef | None = None
    story_id: StoryRef | None = None
    story_points: int | None = Field(default=None, ge=0, le=100)
    commits: Commits | None = None


class TaskUpdate(Input):
    """Fields left out are unchanged; an explicit null clears owner, assignee, sprint, branch,
    context_notes, target_repo, parent_task, story_id or story_points."""

    title: Title | None = None
    description: LongText | None = None
    owner: AgentName | None = None
    assignee: AgentName | None = None
    priority: TaskPriority | None = None
    status: TaskStatus | None = None
    type: TaskType | None = None
    sprint: int | None = Field(default=None, ge=0, le=MAX_SPRINT)
    branch: Annotated[str, StringConstraints(max_length=200)] | None = None
    labels: list[Label] | None = Field(default=None, max_length=20)
    blocks: list[TaskRef] | None = Field(default=None, max_length=50)
    blocked_by: list[TaskRef] | None = Field(default=None, max_length=MAX_BLOCKERS)
    context_notes: LongText | None = None
    target_repo: Annotated[str, StringConstraints(max_length=300)] | None = None
    parent_task: TaskRef | None = None
    story_id: StoryRef | None = None
    review_comment: LongText | None = None
    commits: Commits | None = None
    story_points: int | None = Field(default=None, ge=0, le=100)
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class ReviewReportCreate(Input):
    """Toban's structured review report; an in_progress task moves to review with it."""

    summary: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    changes: ReportText | None = None
    test_results: ReportText | None = None
    commits: Commits | None = None
    notes: ReportText | None = None


class ReviewReport(Output):
    summary: str
    changes: str | None = None
    test_results: str | None = None
    commits: str | None = None
    notes: str | None = None
    submitted_by: str
    submitted_at: str


class TaskReject(Input):
    reason: Reason


class ReviewActionKind(StrEnum):
    approve = "approve"
    fix = "fix"


class ReviewAction(Input):
    action: ReviewActionKind
    comment: LongText | None = None
    fix_description: LongText | None = Field(default=None, description="Description of the fix sub-task (fix only)")


class Task(Output):
    id: str
    workspace_id: str
    title: str
    description: str = ""
    owner: str | None = None
    assignee: str | None = None
    priority: TaskPriority
    status: TaskStatus
    type: TaskType
    sprint: int | None = None
    branch: str | None = None
    labels: list[str] = []
    blocks: list[str] = []
    blocked_by: list[str] = []
    context_notes: str | None = None
    target_repo: str | None = None
    parent_task: str | None = None
    story_id: str | None = None
    story_points: int | None = None
    review_comment: str | None = None
    commits: str | None = None
    review_report: ReviewReport | None = None
    rejection_reason: str | None = None
    reviewed_by: str | None = None
    reviewed_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    created_by: str
    created_at: str
    updated_at: str
    version: int


class TaskSummary(Output):
    id: str
    title: str
    status: TaskStatus
    priority: TaskPriority
    owner: str | None = None
    assignee: str | None = None
    sprint: int | None = None


class ReviewActionResult(Output):
    action: ReviewActionKind
    status: TaskStatus = Field(description="The reviewed task's status after the action")
    task: Task
    unblocked_children: list[TaskSummary] = Field(
        default_factory=list, description="approve: tasks whose blockers are now all done"
    )
    fix_task: Task | None = Field(default=None, description="fix: the sub-task created for the fix")


class TaskQuery(ListQuery):
    """The filters of the task list (each narrows the page; `next` answers one task instead)."""

    status: TaskStatus | None = None
    sprint: int | None = Field(default=None, ge=0, le=MAX_SPRINT)
    owner: str | None = Field(default=None, max_length=100)
    assignee: str | None = Field(default=None, max_length=100, description="An assignee, or `me` for the caller")
    priority: TaskPriority | None = None
    q: str | None = Field(default=None, max_length=200, description="Text in the title or description")
    next: bool = Field(default=False, description="Answer only the assignee's (default: the caller's) next todo task")


# --- stories ------------------------------------------------------------------------------------
class StoryStatus(StrEnum):
    todo = "todo"
    in_progress = "in_progress"
    done = "done"


class StoryCreate(Input):
    title: Title
    description: LongText = ""
    sprint: int | None = Field(default=None, ge=0, le=MAX_SPRINT)
    priority: TaskPriority = TaskPriority.p1
    status: StoryStatus = StoryStatus.todo
    create_task: bool = Field(default=True, description="Also create the story's first task (Toban's builder task)")
    task_owner: AgentName | None = Field(default="builder", description="Owner of the task created with the story")


class StoryUpdate(Input):
    """Fields left out are unchanged; an explicit null sprint takes the story out of its sprint."""

    title: Title | None = None
    description: LongText | None = None
    sprint: int | None = Field(default=None, ge=0, le=MAX_SPRINT)
    priority: TaskPriority | None = None
    status: StoryStatus | None = None
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class Story(Output):
    id: str
    workspace_id: str
    title: str
    description: str = ""
    sprint: int | None = None
    priority: TaskPriority
    status: StoryStatus
    created_by: str
    created_at: str
    updated_at: str
    version: int
    tasks: list[Task] | None = Field(default=None, description="The story's first tasks (single-story reads)")


class StoryQuery(ListQuery):
    status: StoryStatus | None = None
    sprint: int | None = Field(default=None, ge=0, le=MAX_SPRINT)


# --- user tasks ---------------------------------------------------------------------------------
class UserTaskStatus(StrEnum):
    todo = "todo"
    in_progress = "in_progress"
    done = "done"


UserTaskTitle = Annotated[str, StringConstraints(min_length=1, max_length=200)]
UserTaskText = Annotated[str, StringConstraints(max_length=2000)]


class UserTaskCreate(Input):
    title: UserTaskTitle
    description: UserTaskText = ""
    status: UserTaskStatus = UserTaskStatus.todo
    related_tasks: list[TaskRef] = Field(
        default_factory=list, max_length=50, description="Agent tasks this human task blocks until it is done"
    )


class UserTaskUpdate(Input):
    title: UserTaskTitle | None = None
    description: UserTaskText | None = None
    status: UserTaskStatus | None = None
    related_tasks: list[TaskRef] | None = Field(default=None, max_length=50)
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class UserTask(Output):
    id: str
    workspace_id: str
    title: str
    description: str = ""
    status: UserTaskStatus
    related_tasks: list[str] = []
    created_by: str
    created_at: str
    updated_at: str
    completed_at: str | None = None
    version: int


class UserTaskBlocker(Output):
    id: str
    title: str
    status: UserTaskStatus
    related_tasks: list[str] = []
    blocked_sprint_tasks: list[TaskSummary] = Field(
        description="Open tasks of the sprint (the active one unless `sprint` is given) waiting on this user task"
    )


class UserTaskQuery(ListQuery):
    status: UserTaskStatus | None = None


class UserTaskBlockerQuery(ListQuery):
    sprint: int | None = Field(
        default=None, ge=0, le=MAX_SPRINT, description="Sprint whose tasks count (default: the active sprint)"
    )
    limit: int = Field(default=20, ge=1, le=50, description="User tasks read per page (default 20, max 50)")
