"""Memories family: /api/v1/workspaces/{ws}/memories (list, shared, expired, search, revalidate)
and the per-agent /api/v1/workspaces/{ws}/agents/{name}/memories (list, versioned upsert, delete)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from agentplane.access import Access
from agentplane.http import (
    DELETED,
    PROBLEM_RESPONSES,
    IfMatch,
    create_app,
    lambda_entry,
    no_content,
    ok,
    page,
    stored,
    workspace_scope,
)
from agentplane.logic import memories
from agentplane.models.agents import AGENT_NAME_PATTERN
from agentplane.models.envelope import Data, DataList
from agentplane.models.memories import (
    MEMORY_KEY_PATTERN,
    AgentMemoryQuery,
    Memory,
    MemoryPut,
    MemoryQuery,
    MemorySearchQuery,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
MEMORIES = "/api/v1/workspaces/<ws>/memories"
AGENT_MEMORIES = "/api/v1/workspaces/<ws>/agents/<name>/memories"
AgentName = Annotated[str, Path(pattern=AGENT_NAME_PATTERN, description="The agent's name")]
MemoryKey = Annotated[str, Path(pattern=MEMORY_KEY_PATTERN, description="The memory's key within its agent")]
MemoryId = Annotated[str, Path(max_length=64)]
ReadAgents = Annotated[Access, workspace_scope("agents:read")]
WriteAgents = Annotated[Access, workspace_scope("agents:write")]


@app.get(MEMORIES, responses=PROBLEM_RESPONSES)
def list_memories(ws: str, access: ReadAgents, query: Annotated[MemoryQuery, Query()]) -> DataList[Memory]:
    items, next_cursor = memories.list_memories(
        access, memory_type=query.type, agent_name=query.agent, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.get(f"{MEMORIES}/shared", responses=PROBLEM_RESPONSES)
def list_shared_memories(ws: str, access: ReadAgents, query: Annotated[MemoryQuery, Query()]) -> DataList[Memory]:
    items, next_cursor = memories.list_shared(
        access, memory_type=query.type, agent_name=query.agent, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.get(f"{MEMORIES}/expired", responses=PROBLEM_RESPONSES)
def list_expired_memories(ws: str, access: ReadAgents, query: Annotated[MemoryQuery, Query()]) -> DataList[Memory]:
    items, next_cursor = memories.list_expired(
        access, memory_type=query.type, agent_name=query.agent, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.get(f"{MEMORIES}/search", responses=PROBLEM_RESPONSES)
def search_memories(ws: str, access: ReadAgents, query: Annotated[MemorySearchQuery, Query()]) -> DataList[Memory]:
    items, next_cursor = memories.search_memories(
        access, query.q, memory_type=query.type, agent_name=query.agent, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.post(f"{MEMORIES}/<memory_id>/revalidate", responses=PROBLEM_RESPONSES)
def revalidate_memory(ws: str, memory_id: MemoryId, access: WriteAgents) -> Data[Memory]:
    return ok(memories.revalidate_memory(access, memory_id))


@app.get(AGENT_MEMORIES, responses=PROBLEM_RESPONSES)
def list_agent_memories(
    ws: str, name: AgentName, access: ReadAgents, query: Annotated[AgentMemoryQuery, Query()]
) -> DataList[Memory]:
    items, next_cursor = memories.list_memories(
        access, memory_type=query.type, agent_name=name, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.put(f"{AGENT_MEMORIES}/<key>", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def put_memory(
    ws: str, name: AgentName, key: MemoryKey, access: WriteAgents, body: MemoryPut, if_match: IfMatch = None
) -> Response[Data[Memory]]:
    memory, was_created = memories.put_memory(access, name, key, body, if_match)
    return stored(memory, was_created)


@app.delete(f"{AGENT_MEMORIES}/<key>", responses=DELETED)
def delete_memory(
    ws: str, name: AgentName, key: MemoryKey, access: WriteAgents, if_match: IfMatch = None
) -> Response[Any]:
    memories.delete_memory(access, name, key, if_match)
    return no_content()


lambda_handler = lambda_entry(app)
