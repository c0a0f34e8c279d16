"""Sprints (Toban): numbered per workspace, a fixed phase flow, retrospectives and analytics."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from agentplane.models.common import Input, Output
from agentplane.models.tasks import TaskPriority

SprintName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Goal = Annotated[str, StringConstraints(max_length=2000)]
RetroText = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
AgentName = Annotated[str, StringConstraints(min_length=1, max_length=100)]

MAX_SPRINT_NUMBER = 1_000_000


class SprintStatus(StrEnum):
    planning = "planning"
    active = "active"
    review = "review"
    retrospective = "retrospective"
    completed = "completed"


# Toban's phase flow: planning -> active -> review -> retrospective -> completed, and a sprint in
# review may be reopened (review -> active). Nothing else moves.
SPRINT_TRANSITIONS: dict[SprintStatus, frozenset[SprintStatus]] = {
    SprintStatus.planning: frozenset({SprintStatus.active}),
    SprintStatus.active: frozenset({SprintStatus.review}),
    SprintStatus.review: frozenset({SprintStatus.retrospective, SprintStatus.active}),
    SprintStatus.retrospective: frozenset({SprintStatus.completed}),
    SprintStatus.completed: frozenset(),
}


class SprintCreate(Input):
    number: int | None = Field(
        default=None, ge=0, le=MAX_SPRINT_NUMBER, description="Leave out to take the next number (1, 2, 3 ...)"
    )
    name: SprintName | None = None
    goal: Goal | None = None
    status: Literal[SprintStatus.active, SprintStatus.planning] = Field(
        default=SprintStatus.active, description="Sprints start active unless created as planning"
    )
    deadline: date | None = None


class SprintUpdate(Input):
    status: SprintStatus | None = None
    name: SprintName | None = None
    goal: Goal | None = None
    deadline: date | None = None
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class Sprint(Output):
    id: int
    number: int
    workspace_id: str
    name: str | None = None
    goal: str | None = None
    status: SprintStatus
    deadline: date | None = None
    started_at: str | None = None
    completed_at: str | None = None
    created_by: str
    created_at: str
    updated_at: str
    version: int


class SprintTaskSummary(Output):
    id: str
    title: str
    status: str
    owner: str | None = None
    assignee: str | None = None
    type: str | None = None
    priority: str | None = None
    story_points: int | None = None
    completed_at: str | None = None


class SprintSummary(Output):
    total: int
    done: int
    review: int
    in_progress: int
    todo: int
    blocked: int
    completion_rate: int = Field(description="Per cent of tasks done, rounded half up")
    total_points: int
    done_points: int


class AgentBreakdown(Output):
    total: int
    done: int
    points: int
    done_points: int


class BurndownDay(Output):
    date: str
    remaining: int
    remaining_points: int
    done: int


class SprintAnalytics(Output):
    sprint: Sprint
    summary: SprintSummary
    by_agent: dict[str, AgentBreakdown]
    by_type: dict[str, int]
    by_priority: dict[str, int]
    burndown: list[BurndownDay]
    tasks: list[SprintTaskSummary]
    truncated: bool = Field(description="True when the sprint holds more tasks than one analytics read covers")


class SuggestedTask(Input):
    title: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    priority: TaskPriority = TaskPriority.p1


class RetroCreate(Input):
    agent_name: AgentName | None = Field(default=None, description="Who speaks; defaults to the caller")
    went_well: RetroText | None = None
    to_improve: RetroText | None = None
    action_item: RetroText | None = None
    suggested_tasks: list[SuggestedTask] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _says_something(self) -> RetroCreate:
        if not (self.went_well or self.to_improve or self.action_item or self.suggested_tasks):
            raise ValueError("give at least one of went_well, to_improve, action_item or suggested_tasks")
        return self


class RetroComment(Output):
    id: str
    workspace_id: str
    sprint: int
    author: str
    agent_name: str | None = None
    actor_id: str
    went_well: str | None = None
    to_improve: str | None = None
    action_item: str | None = None
    suggested_tasks: list[dict[str, str]] = []
    created_at: str


class SprintReview(Output):
    sprint: Sprint
    summary: SprintSummary
    by_owner: dict[str, list[SprintTaskSummary]]
    retro: list[RetroComment]
    truncated: bool


class SprintStart(Output):
    sprint: Sprint
    started: bool = Field(description="False when the sprint was already active")
    tasks: list[SprintTaskSummary]
    truncated: bool


class VelocityEntry(Output):
    sprint: int
    status: SprintStatus
    total: int
    done: int
    total_points: int
    done_points: int
    completed_at: str | None = None


class Velocity(Output):
    velocity: list[VelocityEntry]
    average_done_points: float


class DailyScorecard(Output):
    tasks_done: int
    points: int
    agents_active: int
    types: dict[str, int]


class HourlyActivity(Output):
    hour: int
    done: int
    created: int


class DailyCount(Output):
    date: str
    created: int
    completed: int
    points: int


class CumulativeDay(Output):
    date: str
    total: int
    daily: int


class DailyAnalytics(Output):
    date: str
    days: int
    scorecard: DailyScorecard
    hourly: list[HourlyActivity]
    daily: list[DailyCount]
    cumulative: list[CumulativeDay]
    tasks: list[SprintTaskSummary]
    truncated: bool
