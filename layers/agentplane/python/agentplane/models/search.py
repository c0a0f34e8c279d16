"""Workspace search: hits grouped by the kind of thing they are (Toban, Orkosi, Takos)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from agentplane.models.common import Output


class SearchType(StrEnum):
    """What a search can return; the value is the group the hits come back under."""

    tasks = "tasks"
    messages = "messages"
    threads = "threads"
    agents = "agents"
    projects = "projects"
    runs = "runs"


class SearchQuery(BaseModel):
    """The query string of a search: the words, the groups and how many hits each."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    q: str = Field(min_length=1, max_length=100, description="Words to find; every one must match")
    types: str | None = Field(
        default=None,
        max_length=200,
        description="Comma-separated groups (tasks, messages, threads, agents, projects, runs)",
    )
    limit: int = Field(default=10, ge=1, le=50, description="Hits per group (default 10, max 50)")


class SearchHit(Output):
    type: str = Field(description="The entity: task, message, thread, agent, project or run")
    id: str
    title: str = Field(description="The title or name (a message's opening words)")
    context: dict[str, str] = Field(
        default_factory=dict,
        description="Ids a client needs to open the hit (a message's thread_id, a run's project_id)",
    )


class SearchGroups(Output):
    tasks: list[SearchHit] = []
    messages: list[SearchHit] = []
    threads: list[SearchHit] = []
    agents: list[SearchHit] = []
    projects: list[SearchHit] = []
    runs: list[SearchHit] = []


class SearchResults(Output):
    query: str
    terms: list[str] = Field(description="The words searched for, as normalized (every one must match)")
    types: list[SearchType]
    results: SearchGroups
    total: int = Field(description="Hits across all groups (each group holds at most `limit`)")
