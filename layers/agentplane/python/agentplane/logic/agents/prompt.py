"""The context an agent's system prompt receives (its workspace, the active sprint, its open
tasks, accepted ADRs, rules and memories), and the full prompt it would be sent."""

from __future__ import annotations

import math
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.entities.agents import AgentItem
from agentplane.entities.sprints import SprintCounterItem, SprintItem
from agentplane.entities.tasks import open_tasks_of_agent
from agentplane.entities.workspaces import WorkspaceItem
from agentplane.logic import knowledge, memories
from agentplane.logic.agents.registry import load_agent
from agentplane.models.agents import (
    AgentContext,
    ContextMemory,
    ContextParts,
    ContextTask,
    PromptMode,
    PromptPreview,
)
from agentplane.models.tasks import TaskStatus
from agentplane.store import get_store

Item = dict[str, Any]

# Tasks of the agent the context includes, and how much of each text the compact prompt keeps.
CONTEXT_TASK_STATUSES = (TaskStatus.in_progress, TaskStatus.review, TaskStatus.todo, TaskStatus.blocked)
CONTEXT_MAX_TASKS = 50
CONTEXT_TASK_READ_BUDGET = 500
CONTEXT_MAX_RULES = 100
COMPACT_TEXT = 300
COMPACT_TASKS = 20
COMPACT_MEMORIES = 30
_PAGE = 100


def _agent_tasks(ws: str, name: str) -> list[Item]:
    """The agent's open tasks (assignee or owner), work in progress first; bounded reads of the
    status index."""
    found: list[Item] = []
    for status in CONTEXT_TASK_STATUSES:
        start: dict[str, Any] | None = None
        read = 0
        while read < CONTEXT_TASK_READ_BUDGET and len(found) < CONTEXT_MAX_TASKS:
            tasks, start = open_tasks_of_agent(ws, name, status.value, limit=_PAGE, start=start)
            read += _PAGE
            found += tasks
            if not start:
                break
    return found[:CONTEXT_MAX_TASKS]


def _active_sprint(ws: str) -> SprintItem | None:
    counter = get_store().read(SprintCounterItem, keys.sprint_counter_key(ws), consistent=False)
    if counter is None or counter.active_number is None:
        return None
    return get_store().read(SprintItem, keys.sprint_key(ws, int(counter.active_number)), consistent=False)


def _context_parts(access: Access, agent: AgentItem) -> ContextParts:
    ws = access.workspace_id
    workspace = get_store().read(WorkspaceItem, keys.workspace_key(ws), consistent=False)
    sprint = _active_sprint(ws)
    rules, _ = knowledge.list_rules(
        access,
        scope=None,
        agent=agent.name,
        category=None,
        permanent=None,
        limit=CONTEXT_MAX_RULES,
        cursor=None,
    )
    return ContextParts(
        workspace={
            "id": ws,
            "name": workspace.name if workspace else "",
            "description": workspace.description if workspace else "",
            "spec": workspace.spec if workspace else "",
        },
        sprint=(
            {
                k: getattr(sprint, k)
                for k in ("number", "name", "goal", "status", "deadline")
                if getattr(sprint, k) is not None
            }
            if sprint
            else None
        ),
        tasks=[ContextTask.model_validate(task) for task in _agent_tasks(ws, agent.name)],
        adrs=knowledge.adr_prompt(access, include_proposed=False).prompt,
        rules=[rule.content for rule in rules],
        memories=[
            ContextMemory.model_validate(memory.model_dump(mode="json"))
            for memory in memories.memories_for_context(ws, agent.name)
        ],
    )


def _clip(text: str, limit: int | None) -> str:
    text = text.strip()
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _render(agent: AgentItem, parts: ContextParts, *, compact: bool) -> str:
    """The context as the agent's prompt receives it (compact: shorter texts, fewer items)."""
    clip = COMPACT_TEXT if compact else None
    role = agent.role or agent.name
    lines = [f"# You are {agent.display_name or agent.name} (agent `{agent.name}`, role: {role})"]
    if agent.description:
        lines += ["", _clip(agent.description, clip)]
    workspace = parts.workspace
    lines += ["", f"## Workspace: {workspace.get('name') or workspace['id']}"]
    if workspace.get("description"):
        lines += [_clip(str(workspace["description"]), clip)]
    if workspace.get("spec"):
        lines += ["", "### Spec", _clip(str(workspace["spec"]), clip)]
    lines += ["", "## Current sprint"]
    if parts.sprint:
        sprint = parts.sprint
        title = f"Sprint {sprint['number']}" + (f" — {sprint['name']}" if sprint.get("name") else "")
        lines += [f"{title} ({sprint.get('status')})"]
        if sprint.get("goal"):
            lines += [f"Goal: {_clip(str(sprint['goal']), clip)}"]
    else:
        lines += ["No sprint is active."]
    lines += ["", "## Your tasks"]
    tasks = parts.tasks[:COMPACT_TASKS] if compact else parts.tasks
    if not tasks:
        lines += ["No open tasks are assigned to you."]
    for task in tasks:
        lines += [f"- [{task.status}] {task.id} ({task.priority or 'p1'}): {task.title}"]
        if task.description:
            lines += [f"  {_clip(task.description, clip)}"]
    lines += [parts.adrs.rstrip("\n")]
    lines += ["", "## Rules"]
    lines += [f"- {_clip(rule, clip)}" for rule in parts.rules] or ["No rules are recorded yet."]
    lines += ["", "## Memories"]
    remembered = parts.memories[:COMPACT_MEMORIES] if compact else parts.memories
    if not remembered:
        lines += ["Nothing remembered yet."]
    for memory in remembered:
        whose = "" if memory.agent_name == agent.name else f" (shared by {memory.agent_name})"
        lines += [f"- [{memory.type}] {memory.key}{whose}: {_clip(memory.content, clip)}"]
    return "\n".join(lines) + "\n"


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def agent_context(access: Access, name: str) -> AgentContext:
    """The context injected into the agent's system prompt: workspace, active sprint, its tasks,
    accepted ADRs, rules and memories."""
    agent = load_agent(access.workspace_id, name)
    parts = _context_parts(access, agent)
    text = _render(agent, parts, compact=False)
    return AgentContext(agent_name=name, context=text, parts=parts, length=len(text), token_estimate=_tokens(text))


def prompt_preview(access: Access, name: str, mode: PromptMode) -> PromptPreview:
    """The full prompt the agent would be sent: its system prompt, then its context."""
    agent = load_agent(access.workspace_id, name)
    parts = _context_parts(access, agent)
    prompt = _render(agent, parts, compact=mode == PromptMode.compact)
    if agent.system_prompt:
        prompt = f"{agent.system_prompt.strip()}\n\n{prompt}"
    return PromptPreview(
        agent_name=name,
        role=agent.role or name,
        mode=mode,
        prompt=prompt,
        length=len(prompt),
        token_estimate=_tokens(prompt),
    )
