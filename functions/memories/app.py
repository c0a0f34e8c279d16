"""Memories family: /api/v1/workspaces/{ws}/memories (list, shared, expired, search, revalidate)
and the per-agent /api/v1/workspaces/{ws}/agents/{name}/memories (list, versioned upsert, delete)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    IfMatch,
    Limit,
    create_app,
    created,
    lambda_entry,
    no_content,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import memories
from agentplane.models.agents import AGENT_NAME_PATTERN
from agentplane.models.envelope import Data, DataList
from agentplane.models.memories import MEMORY_KEY_PATTERN, Memory, MemoryPut, MemoryType

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
MEMORIES = "/api/v1/workspaces/<ws>/memories"
AGENT_MEMORIES = "/api/v1/workspaces/<ws>/agents/<name>/memories"
DELETED = {204: {"description": "Deleted"}, **PROBLEM_RESPONSES}
AgentName = Annotated[str, Path(pattern=AGENT_NAME_PATTERN, description="The agent's name")]
MemoryKey = Annotated[str, Path(pattern=MEMORY_KEY_PATTERN, description="The memory's key within its agent")]
MemoryId = Annotated[str, Path(max_length=64)]
TypeFilter = Annotated[MemoryType | None, Query()]
AgentFilter = Annotated[str | None, Query(pattern=AGENT_NAME_PATTERN, description="One agent's memories")]


@app.get(MEMORIES, responses=PROBLEM_RESPONSES)
def list_memories(
    ws: str, type: TypeFilter = None, agent: AgentFilter = None, limit: Limit = 50, cursor: Cursor = None
) -> DataList[Memory]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    items, next_cursor = memories.list_memories(access, memory_type=type, agent_name=agent, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{MEMORIES}/shared", responses=PROBLEM_RESPONSES)
def list_shared_memories(
    ws: str, type: TypeFilter = None, agent: AgentFilter = None, limit: Limit = 50, cursor: Cursor = None
) -> DataList[Memory]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    items, next_cursor = memories.list_shared(access, memory_type=type, agent_name=agent, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{MEMORIES}/expired", responses=PROBLEM_RESPONSES)
def list_expired_memories(
    ws: str, type: TypeFilter = None, agent: AgentFilter = None, limit: Limit = 50, cursor: Cursor = None
) -> DataList[Memory]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    items, next_cursor = memories.list_expired(access, memory_type=type, agent_name=agent, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{MEMORIES}/search", responses=PROBLEM_RESPONSES)
def search_memories(
    ws: str,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Words that must all appear in key or content")],
    type: TypeFilter = None,
    agent: AgentFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Memory]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    items, next_cursor = memories.search_memories(
        access, q, memory_type=type, agent_name=agent, limit=limit, cursor=cursor
    )
    return page(items, next_cursor, limit)


@app.post(f"{MEMORIES}/<memory_id>/revalidate", responses=PROBLEM_RESPONSES)
def revalidate_memory(ws: str, memory_id: MemoryId) -> Data[Memory]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    return ok(memories.revalidate_memory(access, memory_id, request_id(app)))


@app.get(AGENT_MEMORIES, responses=PROBLEM_RESPONSES)
def list_agent_memories(
    ws: str, name: AgentName, type: TypeFilter = None, limit: Limit = 50, cursor: Cursor = None
) -> DataList[Memory]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    items, next_cursor = memories.list_memories(access, memory_type=type, agent_name=name, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.put(f"{AGENT_MEMORIES}/<key>", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def put_memory(
    ws: str, name: AgentName, key: MemoryKey, body: MemoryPut, if_match: IfMatch = None
) -> Response[Data[Memory]]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    memory, was_created = memories.put_memory(access, name, key, body, if_match, request_id(app))
    return created(memory) if was_created else Response(200, "application/json", body={"data": memory})


@app.delete(f"{AGENT_MEMORIES}/<key>", responses=DELETED)
def delete_memory(ws: str, name: AgentName, key: MemoryKey, if_match: IfMatch = None) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    memories.delete_memory(access, name, key, if_match, request_id(app))
    return no_content()


lambda_handler = lambda_entry(app)
