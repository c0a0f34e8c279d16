"""Tasks (Toban's task fields; the review workflow builds on these)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from agentplane.models.common import Input, LongText, Output

Title = Annotated[str, StringConstraints(min_length=1, max_length=300)]
AgentName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=50)]
TaskRef = Annotated[str, StringConstraints(pattern=r"^task_[0-9a-z]{26}$")]


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
    sprint: int | None = Field(default=None, ge=0)
    branch: Annotated[str, StringConstraints(max_length=200)] | None = None
    labels: list[Label] = Field(default_factory=list, max_length=20)
    blocks: list[TaskRef] = Field(default_factory=list, max_length=50)
    blocked_by: list[TaskRef] = Field(default_factory=list, max_length=50)
    context_notes: LongText | None = None
    target_repo: Annotated[str, StringConstraints(max_length=300)] | None = None
    parent_task: TaskRef | None = None
    story_id: Annotated[str, StringConstraints(max_length=40)] | None = None
    story_points: int | None = Field(default=None, ge=0, le=100)


class TaskUpdate(Input):
    title: Title | None = None
    description: LongText | None = None
    owner: AgentName | None = None
    assignee: AgentName | None = None
    priority: TaskPriority | None = None
    status: TaskStatus | None = None
    type: TaskType | None = None
    sprint: int | None = Field(default=None, ge=0)
    branch: Annotated[str, StringConstraints(max_length=200)] | None = None
    labels: list[Label] | None = Field(default=None, max_length=20)
    blocks: list[TaskRef] | None = Field(default=None, max_length=50)
    blocked_by: list[TaskRef] | None = Field(default=None, max_length=50)
    context_notes: LongText | None = None
    review_comment: LongText | None = None
    commits: Annotated[str, StringConstraints(max_length=2000)] | None = None
    story_points: int | None = Field(default=None, ge=0, le=100)
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


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
    created_by: str
    created_at: str
    updated_at: str
    version: int
