"""Sprints (Toban): numbered per workspace, a fixed phase flow, retrospectives and analytics."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from agentplane.models.agents import Agent, AgentStatus, Progress
from agentplane.models.common import Input, ListQuery, Output
from agentplane.models.envelope import PageMeta
from agentplane.models.projects import Project
from agentplane.models.tasks import Task, TaskPriority

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


class SprintQuery(ListQuery):
    status: SprintStatus | None = None


class SprintBoardQuery(ListQuery):
    sprint: int | None = Field(default=None, ge=0, le=MAX_SPRINT_NUMBER, description="Another sprint's number")


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
    truncated: bool = Field(
        description="True when `tasks` lists only the first of the sprint's tasks (the figures count them all)"
    )


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


class StartedAgent(Output):
    name: str
    status: AgentStatus
    engine: str | None = None
    execution_mode: str | None = None


class SkippedAgent(Output):
    name: str
    reason: str = Field(
        description="`not_registered` (no such agent), `already_running` (active or working), "
        "`stopped` (asked to stop) or `missing_scope` (the caller cannot change agents)"
    )


class SprintStart(Output):
    sprint: Sprint
    started: bool = Field(description="False when the sprint was already active")
    agents: list[StartedAgent] = Field(description="The sprint's agents, now `starting` (Toban)")
    skipped_agents: list[SkippedAgent] = Field(
        description="The sprint's agents left as they were (Toban's skippedAgents)"
    )
    tasks: list[SprintTaskSummary]
    truncated: bool


class SprintBoard(Output):
    """Toban's `sprints/current/tasks`: the sprint's tasks (one page) with what a board shows
    around them."""

    sprint: Sprint | None = Field(description="None when the number asked for has no sprint yet")
    number: int
    tasks: list[Task]
    agents: list[Agent] = Field(description="The workspace's agents (needs agents:read, else empty)")
    progress: list[Progress] = Field(description="Each agent's latest progress report (needs agents:read)")
    sprints: list[Sprint] = Field(description="The latest sprints, newest first")
    projects: list[Project] = Field(description="The workspace's projects: Toban's repositories (needs projects:read)")


class SprintBoardPage(BaseModel):
    data: SprintBoard
    meta: PageMeta = Field(description="`next_cursor` pages through the tasks")


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
    done: int = Field(description="Tasks done in this hour")
    started: int = Field(description="Tasks first moved to in_progress in this hour")
    total: int = Field(description="Tasks done that day up to the end of this hour")
    created: int = Field(description="Tasks created in this hour")


class DailyCount(Output):
    date: str
    created: int
    started: int
    completed: int
    points: int


class CumulativeDay(Output):
    date: str
    total: int = Field(description="Tasks done up to the end of this day, since the workspace began")
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
