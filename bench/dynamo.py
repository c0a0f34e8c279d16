"""DynamoDB calls per request, route by route, counted at botocore's `before-call` hook.

Every scenario gets a fresh emulated stack (moto + the template), builds what the route needs
through the API itself (a registered user, a workspace, a task...), then sends one request through
the emulated API Gateway. The function checks the caller's token itself on every call (its record,
and on a workspace's routes the workspace and the membership); the report shows how that check
travelled apart from the route's own calls:

- `in read`: inside the route's first read (a GetItem became one BatchGetItem holding both),
- `beside`: its own BatchGetItem, sent from another thread as the route's Query went out,
- `before`: its own BatchGetItem ahead of a write (a write checks first, then runs),
- `after`: its own BatchGetItem when the route read nothing.

`round trips` counts the calls one after another: a check beside a Query adds none. Before the
measured request the caller has made one read, as steady traffic has (so the function has seen the
token), and the per-principal rate-limit counters are reset (the limiter folds its count into the
table on every SYNC_EVERY-th call, not on this one).

Before the functions checked tokens themselves, an authorizer cached by API Gateway for 60 s read
the token and the caller's memberships (GetItem + Query) once per token per minute and the routes
made only their own calls: the same round trips for reads as now, and a revoked token read on
for up to a minute.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from devstack import aws, stepfunctions, template
from devstack.gateway import HttpApi, HttpResponse
from devstack.lambdas import Lambdas, ensure_layer_on_path
from tools import apps

SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
CHECK_THREAD = "deferred-check"
_invoking: contextvars.ContextVar[str | None] = contextvars.ContextVar("invoking", default=None)


# ---------------------------------------------------------------- targets and scenarios


@dataclass(frozen=True)
class Target:
    label: str
    met_by: Callable[[list[str]], bool]


ONE_READ = Target("1 call", lambda ops: len(ops) == 1)
ONE_QUERY = Target("1 Query", lambda ops: ops == ["Query"])
ONE_TRANSACTION = Target("1 TransactWriteItems", lambda ops: ops == ["TransactWriteItems"])
NO_CALLS = Target("0 calls", lambda ops: ops == [])
READ_AND_TRANSACTION = Target(
    "1 read + 1 TransactWriteItems",
    lambda ops: ops in (["GetItem", "TransactWriteItems"], ["BatchGetItem", "TransactWriteItems"]),
)
# A transition (a run's, a job's, a task's review): the item read once (its status, worker, event
# counter), then one transaction holding the conditional update, whatever moves with it, the guards
# and the audit row. Numbered creates (sprints, ADRs, a thread's messages) read their counter the same
# way and write it back conditionally in the transaction.
GET_AND_TRANSACTION = Target("1 GetItem + 1 TransactWriteItems", lambda ops: ops == ["GetItem", "TransactWriteItems"])
# Starting work (a run, or a project's clone, pull or index, which queue maintenance runs) also
# counts the call against the caller's run-start limit (6 a minute, kept exactly in the table): that
# UpdateItem first, then the read and the transaction.
LIMITED_TRANSITION = Target(
    "1 UpdateItem (run-start limit) + 1 GetItem + 1 TransactWriteItems",
    lambda ops: ops == ["UpdateItem", "GetItem", "TransactWriteItems"],
)
# A run heartbeat is no transition: the run read (its worker and status), then one conditional update.
# (A heartbeat reporting an activity line reads the run with the workspace's secrets, to redact it:
# one BatchGetItem instead of the GetItem.)
GET_AND_UPDATE = Target("1 GetItem + 1 UpdateItem", lambda ops: ops == ["GetItem", "UpdateItem"])
# A list under a parent that can be deleted: the parent read (a deleted or unknown one is a 404, not
# an empty list), then one Query.
GET_AND_QUERY = Target("1 GetItem + 1 Query", lambda ops: ops == ["GetItem", "Query"])
# An agent's question: the run read with the workspace's secrets (to redact it), the transaction
# holding the question, the run's move and its event, then the creator's notification.
ASK = Target(
    "1 BatchGetItem + 2 TransactWriteItems (the question, the notification)",
    lambda ops: ops == ["BatchGetItem", "TransactWriteItems", "TransactWriteItems"],
)
READS = frozenset({"GetItem", "BatchGetItem", "Query"})


def reads(n: int) -> Target:
    """`n` read calls and no write: for an item found through another, or one that embeds others."""
    return Target(f"{n} reads", lambda ops: len(ops) == n and set(ops) <= READS)


@dataclass(frozen=True)
class Scenario:
    method: str
    path: str  # as in template.yaml
    target: Target | None = None
    needs: tuple[str, ...] = ()  # built first, in order (see BUILDERS)
    body: Callable[[World], dict[str, Any]] | None = None  # None: a sample from the route's model
    anonymous: bool = False
    caller: str = "token"  # whose token: the owner's ("token") or the newcomer's ("newcomer_token")
    query: str = ""  # sent after the path, e.g. "q=login"

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


WS = "/api/v1/workspaces/{ws}"
# An agent run's draft (a deploy run's names a capsule or a plan instead).
_AGENT_RUN = {"title": "Add login page", "prompt": "Build the login page", "agent": "builder"}
PROJECT = f"{WS}/projects/{{project_id}}"
THREAD = f"{WS}/threads/{{thread_id}}"
AGENT = f"{WS}/agents/{{name}}"
RUN = f"{WS}/runs/{{run_id}}"
WORKER = "bench-worker"
_RETRO = {"went_well": "Reviews were quick", "to_improve": "Flaky tests"}
_SCHEDULE = {
    "name": "Nightly report",
    "expression": "rate(1 day)",
    "target": {"type": "queue_job", "task_type": "report"},
}
_DEVICE = {"platform": "ios", "push_token": "a" * 64, "name": "phone"}
CAPSULE = f"{WS}/capsules/{{capsule_id}}"
_CONNECTION = {"name": "prod-aws", "provider": "aws", "credentials": {"AWS_ACCESS_KEY_ID": "bench-key-0123456789"}}
_CAPSULE = {"name": "web", "source": {"repository_url": "https://github.com/acme/infra"}}


def _doc_body(version: str) -> dict[str, Any]:
    return {"title": "Readme", "content": f"# Readme\n\nThe {version} text.\n"}


def _progress_body(world: World) -> dict[str, Any]:
    return {"agent": world.values["agent_name"], "message": "Halfway through the tests", "percent": 50}


def _question(world: World) -> dict[str, Any]:
    return {"worker_id": WORKER, "question": "Which branch should I target?"}


def _worker(world: World) -> dict[str, Any]:
    return {"worker_id": WORKER}


def _memory_body(world: World, version: int = 0) -> dict[str, Any]:
    return {"content": f"Format with ruff, then run the tests (v{version + 1})", "type": "project", "version": version}


def _new_account(world: World) -> dict[str, Any]:
    return {
        "username": "newcomer",
        "email": "newcomer@example.com",
        "password": PASSWORD,
        "terms_accepted": True,
        "privacy_accepted": True,
    }


def _credentials(world: World) -> dict[str, Any]:
    return {"email": world.values["email"], "password": PASSWORD}


SCENARIOS: list[Scenario] = [
    # health
    Scenario("GET", "/api/health", anonymous=True),
    Scenario("GET", "/api/v1/health", anonymous=True),
    Scenario("GET", "/api/ready", anonymous=True),
    Scenario("GET", "/api/v1/ready", anonymous=True),
    Scenario("GET", "/api/version", anonymous=True),
    Scenario("GET", "/api/v1/version", anonymous=True),
    Scenario("GET", "/api/site/status", anonymous=True),
    Scenario("GET", "/api/v1/config/constants", anonymous=True),
    # auth
    Scenario("POST", "/api/v1/auth/register", body=_new_account, anonymous=True),
    Scenario("POST", "/api/v1/auth/login", body=_credentials, anonymous=True),
    Scenario("POST", "/api/v1/auth/token", body=_credentials, anonymous=True),
    Scenario(
        "POST", "/api/v1/auth/refresh", body=lambda w: {"refresh_token": w.values["refresh_token"]}, anonymous=True
    ),
    Scenario("POST", "/api/v1/auth/forgot-password", body=lambda w: {"email": w.values["email"]}, anonymous=True),
    Scenario("POST", "/api/v1/auth/reset-password", anonymous=True),  # the emailed token is unknowable: a 4xx
    Scenario("GET", "/api/v1/auth/me", ONE_READ),
    Scenario("POST", "/api/v1/auth/logout"),
    # the first account is the site owner's, which cannot be erased: a second one erases itself
    Scenario("DELETE", "/api/v1/users/me", needs=("newcomer",), caller="newcomer_token"),
    # me
    Scenario("GET", "/api/v1/me", ONE_READ),
    Scenario("PATCH", "/api/v1/me"),
    Scenario("GET", "/api/v1/me/workspaces", ONE_QUERY, needs=("workspace",)),
    Scenario("GET", "/api/v1/me/personal-access-tokens", ONE_QUERY, needs=("pat",)),
    Scenario("POST", "/api/v1/me/personal-access-tokens", ONE_TRANSACTION),
    Scenario("DELETE", "/api/v1/me/personal-access-tokens/{pat_id}", needs=("pat",)),
    # register or refresh: the device and its push token's claim (one read), then one transaction
    Scenario("POST", "/api/v1/me/devices", READ_AND_TRANSACTION, body=lambda w: _DEVICE),
    Scenario("DELETE", "/api/v1/me/devices/{device_id}", needs=("device",)),
    # workspaces
    Scenario("POST", "/api/v1/workspaces", ONE_TRANSACTION),
    Scenario("GET", "/api/v1/workspaces", ONE_QUERY, needs=("workspace",)),
    Scenario("GET", WS, ONE_READ, needs=("workspace",)),
    Scenario("PATCH", WS, needs=("workspace",)),
    # the page, then its members' profiles in one BatchGetItem: profiles live on the users (copies on the
    # memberships could not be kept in step: creating a workspace has no profile at hand for its owner)
    Scenario("GET", f"{WS}/members", reads(2), needs=("workspace",)),
    Scenario(
        "POST",
        f"{WS}/members",
        needs=("workspace", "newcomer"),
        body=lambda w: w.sample("POST", f"{WS}/members", {"user_id": w.values["member_id"], "role": "member"}),
    ),
    Scenario("PATCH", f"{WS}/members/{{user_id}}", needs=("workspace", "member")),
    Scenario("DELETE", f"{WS}/members/{{user_id}}", needs=("workspace", "member")),
    Scenario("GET", f"{WS}/invites", ONE_QUERY, needs=("workspace", "invite")),
    # the email's account, if any, is read to check in the transaction that it is not a member yet
    Scenario("POST", f"{WS}/invites", READ_AND_TRANSACTION, needs=("workspace",)),
    Scenario("DELETE", f"{WS}/invites/{{invite_id}}", needs=("workspace", "invite")),
    Scenario("GET", f"{WS}/teams", ONE_QUERY, needs=("workspace", "team")),
    Scenario("POST", f"{WS}/teams", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/teams/{{team_id}}", ONE_READ, needs=("workspace", "team")),
    Scenario("PATCH", f"{WS}/teams/{{team_id}}", needs=("workspace", "team")),
    Scenario("GET", f"{WS}/teams/{{team_id}}/members", ONE_QUERY, needs=("workspace", "team")),
    Scenario("DELETE", f"{WS}/teams/{{team_id}}", needs=("workspace", "team")),
    Scenario(
        "POST",
        f"{WS}/teams/{{team_id}}/members",
        needs=("workspace", "team", "member"),
        body=lambda w: w.sample("POST", f"{WS}/teams/{{team_id}}/members", {"user_id": w.values["member_id"]}),
    ),
    Scenario("DELETE", f"{WS}/teams/{{team_id}}/members/{{user_id}}", needs=("workspace", "team", "team_member")),
    Scenario(
        "POST", "/api/v1/invites/{token}/accept", needs=("workspace", "invite", "newcomer"), caller="newcomer_token"
    ),
    Scenario("GET", f"{WS}/common-env", ONE_READ, needs=("workspace",)),
    Scenario("PUT", f"{WS}/common-env", needs=("workspace",)),
    Scenario("DELETE", f"{WS}/common-env", needs=("workspace",)),
    Scenario("GET", f"{WS}/export", needs=("workspace", "task")),
    Scenario("POST", f"{WS}/import", needs=("workspace",)),
    Scenario("DELETE", WS, needs=("workspace",)),
    # api keys
    Scenario("POST", f"{WS}/api-keys", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/api-keys", ONE_QUERY, needs=("workspace", "api_key")),
    Scenario("GET", f"{WS}/api-keys/{{key_id}}", ONE_READ, needs=("workspace", "api_key")),
    Scenario("PATCH", f"{WS}/api-keys/{{key_id}}", needs=("workspace", "api_key")),
    Scenario("POST", f"{WS}/api-keys/{{key_id}}/revoke", needs=("workspace", "api_key")),
    Scenario("POST", f"{WS}/api-keys/{{key_id}}/rotate", needs=("workspace", "api_key")),
    Scenario("POST", f"{WS}/api-keys/{{key_id}}/roll", needs=("workspace", "api_key")),
    Scenario("DELETE", f"{WS}/api-keys/{{key_id}}", needs=("workspace", "api_key")),
    Scenario("GET", f"{WS}/api-keys/{{key_id}}/usage", ONE_QUERY, needs=("workspace", "api_key")),
    # tasks
    Scenario("POST", f"{WS}/tasks", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/tasks", ONE_QUERY, needs=("workspace", "task")),
    # an agent's next task: its todo links in priority order (Query), then those tasks (BatchGetItem)
    Scenario("GET", f"{WS}/tasks", reads(2), needs=("workspace", "agent_task"), query="next=true&assignee=builder"),
    Scenario("GET", f"{WS}/tasks/{{task_id}}", ONE_READ, needs=("workspace", "task")),
    Scenario("PATCH", f"{WS}/tasks/{{task_id}}", needs=("workspace", "task")),
    Scenario("DELETE", f"{WS}/tasks/{{task_id}}", needs=("workspace", "task")),
    # tasks: the review workflow (a transition reads the task, then writes one transaction)
    # a review report is the agent's text: the task is read with the workspace's secrets to redact it
    Scenario(
        "POST", f"{WS}/tasks/{{task_id}}/review-report", READ_AND_TRANSACTION, needs=("workspace", "in_progress_task")
    ),
    # approving also reads the tasks the approved one blocked, to unblock those whose blockers are done
    Scenario("POST", f"{WS}/tasks/{{task_id}}/approve", needs=("workspace", "review_task")),
    Scenario("POST", f"{WS}/tasks/{{task_id}}/reject", GET_AND_TRANSACTION, needs=("workspace", "review_task")),
    Scenario("POST", f"{WS}/tasks/{{task_id}}/review-action", needs=("workspace", "review_task")),
    # stories
    Scenario("POST", f"{WS}/stories", ONE_TRANSACTION, needs=("workspace",)),  # with its first task
    Scenario("GET", f"{WS}/stories", ONE_QUERY, needs=("workspace", "story")),
    # a story embeds its tasks: the story, its task links (Query), then the tasks (BatchGetItem)
    Scenario("GET", f"{WS}/stories/{{story_id}}", reads(3), needs=("workspace", "story")),
    Scenario("PATCH", f"{WS}/stories/{{story_id}}", needs=("workspace", "story")),
    Scenario("DELETE", f"{WS}/stories/{{story_id}}", needs=("workspace", "story")),
    Scenario("GET", f"{WS}/stories/{{story_id}}/tasks", reads(3), needs=("workspace", "story")),  # likewise
    # user tasks
    Scenario("POST", f"{WS}/user-tasks", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/user-tasks", ONE_QUERY, needs=("workspace", "user_task")),
    # the blockers: each open user task with the agent tasks it blocks, read after the page of them
    Scenario("GET", f"{WS}/user-tasks/blockers", needs=("workspace", "user_task")),
    Scenario("PUT", f"{WS}/user-tasks/{{user_task_id}}", needs=("workspace", "user_task")),
    Scenario("DELETE", f"{WS}/user-tasks/{{user_task_id}}", needs=("workspace", "user_task")),
    # projects
    Scenario("POST", f"{WS}/projects", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/projects", ONE_QUERY, needs=("workspace", "project")),
    Scenario("GET", PROJECT, ONE_READ, needs=("workspace", "project")),
    Scenario("PATCH", PROJECT, needs=("workspace", "project")),
    Scenario("DELETE", PROJECT, needs=("workspace", "project")),
    # maintenance runs are started work, limited like runs/{run_id}/start: the limit's UpdateItem, the
    # project read (its repository and branch go into the run), then the queued run, its changelog
    # entry and audit row in one transaction
    Scenario("POST", f"{PROJECT}/clone", LIMITED_TRANSITION, needs=("workspace", "project")),
    Scenario("POST", f"{PROJECT}/pull", LIMITED_TRANSITION, needs=("workspace", "project")),
    Scenario("POST", f"{PROJECT}/index", LIMITED_TRANSITION, needs=("workspace", "project")),
    Scenario("GET", f"{PROJECT}/docs", GET_AND_QUERY, needs=("workspace", "project", "doc")),
    Scenario("POST", f"{PROJECT}/docs/regenerate", needs=("workspace", "project", "doc")),  # every doc marked stale
    # a doc's content is stored apart (by its hash, shared with snapshots): the live project with the
    # doc, then the content
    Scenario("GET", f"{PROJECT}/docs/{{slug}}", reads(2), needs=("workspace", "project", "doc")),
    Scenario("PUT", f"{PROJECT}/docs/{{slug}}", needs=("workspace", "project", "doc"), body=lambda w: _doc_body("v2")),
    Scenario("GET", f"{PROJECT}/changelog", GET_AND_QUERY, needs=("workspace", "project")),
    # snapshots: taking one captures the project and all its docs, restoring and comparing read them back
    Scenario("GET", f"{PROJECT}/snapshots", GET_AND_QUERY, needs=("workspace", "project", "snapshot")),
    Scenario("POST", f"{PROJECT}/snapshots", needs=("workspace", "project", "doc")),
    # a snapshot goes with its project: the snapshot, then whether its project is live
    Scenario("GET", f"{WS}/snapshots/{{snapshot_id}}", reads(2), needs=("workspace", "project", "snapshot")),
    Scenario("POST", f"{WS}/snapshots/{{snapshot_id}}/restore", needs=("workspace", "project", "snapshot")),
    Scenario("POST", f"{WS}/snapshots/{{snapshot_id}}/compare", needs=("workspace", "project", "snapshot")),
    # sprints
    Scenario("POST", f"{WS}/sprints", GET_AND_TRANSACTION, needs=("workspace",)),  # the number counter
    Scenario("GET", f"{WS}/sprints", ONE_QUERY, needs=("workspace", "sprint")),
    # the current sprint: the counter's active number, then that sprint (or its tasks)
    Scenario("GET", f"{WS}/sprints/current", reads(2), needs=("workspace", "sprint")),
    # starting: the latest open sprint found and moved in one transaction, answered with its tasks
    Scenario("POST", f"{WS}/sprints/current/start", needs=("workspace", "planning_sprint", "sprint_tasks")),
    # Toban's board: the counter's active number, a page of the sprint's tasks, the sprint, the latest
    # sprints, the agents, their latest progress and the projects, one read each
    Scenario("GET", f"{WS}/sprints/current/tasks", reads(7), needs=("workspace", "sprint", "sprint_tasks")),
    # analytics read counters the tasks' own transactions keep, never the tasks: velocity is the
    # completed sprints (Query) and their counters (one BatchGetItem)
    Scenario(
        "GET", f"{WS}/sprints/analytics/velocity", reads(2), needs=("workspace", "sprint", "sprint_tasks", "completed")
    ),
    Scenario("GET", f"{WS}/analytics/velocity", reads(2), needs=("workspace", "sprint", "sprint_tasks", "completed")),
    # daily: the month totals, the window's day counters, the day's done tasks by time, those tasks
    Scenario("GET", f"{WS}/sprints/analytics/daily", reads(4), needs=("workspace", "sprint", "sprint_tasks")),
    Scenario("GET", f"{WS}/analytics/daily", reads(4), needs=("workspace", "sprint", "sprint_tasks")),
    Scenario("GET", f"{WS}/sprints/{{number}}", ONE_READ, needs=("workspace", "sprint")),
    Scenario("PATCH", f"{WS}/sprints/{{number}}", needs=("workspace", "sprint"), body=lambda w: {"status": "review"}),
    # the sprint with its counters (BatchGetItem), its tasks grouped by agent, its retrospective
    Scenario(
        "GET", f"{WS}/sprints/{{number}}/review", reads(3), needs=("workspace", "sprint", "sprint_tasks", "retro")
    ),
    Scenario("GET", f"{WS}/sprints/{{number}}/retro", GET_AND_QUERY, needs=("workspace", "sprint", "retro")),
    Scenario(
        "POST", f"{WS}/sprints/{{number}}/retro", ONE_TRANSACTION, needs=("workspace", "sprint"), body=lambda w: _RETRO
    ),
    # the sprint with its counters (BatchGetItem: summary, breakdowns, burndown), then its task list
    Scenario("GET", f"{WS}/sprints/{{number}}/analytics", reads(2), needs=("workspace", "sprint", "sprint_tasks")),
    # threads and team messages
    Scenario("POST", f"{WS}/threads", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/threads", ONE_QUERY, needs=("workspace", "thread")),
    Scenario("GET", THREAD, ONE_READ, needs=("workspace", "thread")),
    Scenario("PATCH", THREAD, needs=("workspace", "thread")),
    Scenario("DELETE", THREAD, needs=("workspace", "thread")),
    # the thread's message_count numbers its messages: read, then moved in the transaction
    Scenario("POST", f"{THREAD}/messages", GET_AND_TRANSACTION, needs=("workspace", "thread")),
    Scenario("GET", f"{THREAD}/messages", GET_AND_QUERY, needs=("workspace", "thread", "thread_message")),
    Scenario("POST", f"{THREAD}/share", ONE_TRANSACTION, needs=("workspace", "thread")),
    Scenario("GET", f"{THREAD}/shares", GET_AND_QUERY, needs=("workspace", "thread", "share")),
    Scenario("DELETE", f"{THREAD}/share/{{share_id}}", needs=("workspace", "thread", "share")),
    # a public read: the share by its token's hash, the thread, then a page of its messages
    Scenario(
        "GET",
        "/api/v1/public/thread-shares/{token}",
        needs=("workspace", "thread", "thread_message", "share"),
        anonymous=True,
    ),
    Scenario("POST", f"{WS}/messages", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/messages", ONE_QUERY, needs=("workspace", "team_message")),
    # knowledge
    Scenario("POST", f"{WS}/adrs", GET_AND_TRANSACTION, needs=("workspace",)),  # the number counter
    Scenario("GET", f"{WS}/adrs", ONE_QUERY, needs=("workspace", "adr")),
    Scenario("GET", f"{WS}/adrs/prompt", ONE_QUERY, needs=("workspace", "adr")),  # the ADRs, rendered
    Scenario("GET", f"{WS}/adrs/{{adr_id}}", ONE_READ, needs=("workspace", "adr")),
    Scenario("PATCH", f"{WS}/adrs/{{adr_id}}", needs=("workspace", "adr")),
    Scenario("DELETE", f"{WS}/adrs/{{adr_id}}", needs=("workspace", "adr")),
    Scenario("POST", f"{WS}/rules", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/rules", ONE_QUERY, needs=("workspace", "rule")),
    Scenario("PATCH", f"{WS}/rules/{{rule_id}}", needs=("workspace", "rule")),
    Scenario("DELETE", f"{WS}/rules/{{rule_id}}", needs=("workspace", "rule")),
    Scenario("POST", f"{WS}/failures", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/failures", ONE_QUERY, needs=("workspace", "failure")),
    # notifications (the caller's own inbox)
    Scenario("GET", f"{WS}/notifications", ONE_QUERY, needs=("workspace", "notification")),
    Scenario("POST", f"{WS}/notifications", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/notifications/unread-count", ONE_READ, needs=("workspace", "notification")),
    Scenario("PATCH", f"{WS}/notifications/read-all", needs=("workspace", "notification")),  # pages of unread ones
    Scenario("PATCH", f"{WS}/notifications/{{notification_id}}/read", needs=("workspace", "notification")),
    # SSE: polls the inbox until something arrives (here at once: one unread notification waits)
    Scenario("GET", f"{WS}/notifications/stream", needs=("workspace", "notification")),
    # search: one Query per requested group (six by default), plus BatchGetItem for further words
    Scenario("GET", f"{WS}/search", needs=("workspace", "task"), query="q=measure"),
    # audit, activity and logs
    Scenario("GET", f"{WS}/audit-logs", ONE_QUERY, needs=("workspace", "task")),
    # a log line is redacted with the workspace's secrets: those read (one BatchGetItem), then one transaction
    Scenario("POST", f"{WS}/activity", READ_AND_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/activity", ONE_QUERY, needs=("workspace", "activity")),
    Scenario("GET", f"{WS}/activity/stats", ONE_QUERY, needs=("workspace", "activity")),  # one key-range Query
    Scenario("GET", f"{WS}/logs", ONE_QUERY, needs=("workspace", "activity")),
    # agents
    Scenario("POST", f"{WS}/agents", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("PUT", f"{WS}/agents", needs=("workspace", "agent"), body=lambda w: {"name": w.values["agent_name"]}),
    Scenario("GET", f"{WS}/agents", ONE_QUERY, needs=("workspace", "agent")),
    Scenario("POST", f"{WS}/agents/check-stalls", needs=("workspace", "agent"), body=lambda w: {}),  # every agent
    # the agent is read, not checked in the transaction, so reports do not collide with its heartbeats;
    # the workspace's secrets (to redact the report) come in the same BatchGetItem
    Scenario("POST", f"{WS}/agents/progress", READ_AND_TRANSACTION, needs=("workspace", "agent"), body=_progress_body),
    Scenario("GET", f"{WS}/agents/progress/latest", ONE_QUERY, needs=("workspace", "agent", "progress")),
    Scenario("GET", AGENT, ONE_READ, needs=("workspace", "agent")),
    Scenario("PATCH", AGENT, needs=("workspace", "agent")),
    Scenario("DELETE", AGENT, needs=("workspace", "agent")),
    Scenario("PUT", f"{AGENT}/config", needs=("workspace", "agent")),
    Scenario("POST", f"{AGENT}/start", needs=("workspace", "agent")),
    Scenario("POST", f"{AGENT}/stop", needs=("workspace", "agent")),
    Scenario("POST", f"{AGENT}/restart", needs=("workspace", "agent")),
    # context assembly and its prompt: the agent with its tasks, memories, rules and ADRs
    Scenario("GET", f"{AGENT}/context", needs=("workspace", "agent", "memory", "rule", "adr")),
    Scenario("GET", f"{AGENT}/prompt-preview", needs=("workspace", "agent", "memory", "rule", "adr")),
    Scenario("GET", f"{AGENT}/progress", ONE_QUERY, needs=("workspace", "agent", "progress")),
    Scenario("POST", f"{WS}/agent-templates", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/agent-templates", ONE_QUERY, needs=("workspace", "agent_template")),
    Scenario("GET", f"{WS}/agent-templates/{{template_id}}", ONE_READ, needs=("workspace", "agent_template")),
    Scenario("PATCH", f"{WS}/agent-templates/{{template_id}}", needs=("workspace", "agent_template")),
    Scenario("DELETE", f"{WS}/agent-templates/{{template_id}}", needs=("workspace", "agent_template")),
    # memories
    Scenario("GET", f"{WS}/memories", ONE_QUERY, needs=("workspace", "agent", "memory")),
    Scenario("GET", f"{WS}/memories/shared", ONE_QUERY, needs=("workspace", "agent", "memory")),
    Scenario("GET", f"{WS}/memories/expired", ONE_QUERY, needs=("workspace", "agent", "memory")),
    # words matched in key or content: a filtered Query that reads on until the page is full
    Scenario("GET", f"{WS}/memories/search", needs=("workspace", "agent", "memory"), query="q=ruff"),
    Scenario("POST", f"{WS}/memories/{{memory_id}}/revalidate", needs=("workspace", "agent", "memory")),
    Scenario("GET", f"{AGENT}/memories", ONE_QUERY, needs=("workspace", "agent", "memory")),
    Scenario(
        "PUT", f"{AGENT}/memories/{{key}}", needs=("workspace", "agent", "memory"), body=lambda w: _memory_body(w, 1)
    ),
    Scenario("DELETE", f"{AGENT}/memories/{{key}}", needs=("workspace", "agent", "memory")),
    # queue
    Scenario("POST", f"{WS}/queue/jobs", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/queue/jobs", ONE_QUERY, needs=("workspace", "queue_job")),
    Scenario("GET", f"{WS}/queue/jobs/{{job_id}}", ONE_READ, needs=("workspace", "queue_job")),
    # claiming: a Query for ready jobs, then a conditional claim per job (losers try the next one)
    Scenario("POST", f"{WS}/queue/claim", needs=("workspace", "queue_job"), body=_worker),
    Scenario(
        "POST",
        f"{WS}/queue/jobs/{{job_id}}/complete",
        GET_AND_TRANSACTION,
        needs=("workspace", "claimed_job"),
        body=_worker,
    ),
    Scenario(
        "POST",
        f"{WS}/queue/jobs/{{job_id}}/fail",
        READ_AND_TRANSACTION,  # the job with the workspace's secrets, to redact the worker's error
        needs=("workspace", "claimed_job"),
        body=lambda w: {"worker_id": WORKER, "error": "timed out"},
    ),
    Scenario("GET", f"{WS}/queue/stats", ONE_READ, needs=("workspace", "queue_job")),  # the counters, one batch
    # schedules
    Scenario("POST", f"{WS}/schedules", ONE_TRANSACTION, needs=("workspace",), body=lambda w: _SCHEDULE),
    Scenario("GET", f"{WS}/schedules", ONE_QUERY, needs=("workspace", "schedule")),
    Scenario("GET", f"{WS}/schedules/{{schedule_id}}", ONE_READ, needs=("workspace", "schedule")),
    Scenario("PATCH", f"{WS}/schedules/{{schedule_id}}", needs=("workspace", "schedule")),
    Scenario("DELETE", f"{WS}/schedules/{{schedule_id}}", needs=("workspace", "schedule")),
    Scenario("POST", f"{WS}/schedules/{{schedule_id}}/run", needs=("workspace", "schedule")),  # submits its job
    # deploy: a bound capsule is shown with its bindings resolved from one more read (the policy
    # and the bound connections in one BatchGetItem)
    Scenario("POST", f"{WS}/connections", ONE_TRANSACTION, needs=("workspace",), body=lambda w: _CONNECTION),
    Scenario("GET", f"{WS}/connections", ONE_QUERY, needs=("workspace", "connection")),
    Scenario("GET", f"{WS}/connections/{{connection_id}}", ONE_READ, needs=("workspace", "connection")),
    Scenario("DELETE", f"{WS}/connections/{{connection_id}}", GET_AND_TRANSACTION, needs=("workspace", "connection")),
    Scenario("POST", f"{WS}/capsules", ONE_TRANSACTION, needs=("workspace",), body=lambda w: _CAPSULE),
    Scenario("GET", f"{WS}/capsules", reads(2), needs=("workspace", "connection", "capsule", "bindings")),
    Scenario("GET", CAPSULE, reads(2), needs=("workspace", "connection", "capsule", "bindings")),
    Scenario("PATCH", CAPSULE, needs=("workspace", "connection", "capsule", "bindings")),
    # the capsule, the policy and the connections named in one BatchGetItem, then the write
    Scenario(
        "PUT",
        f"{CAPSULE}/bindings",
        READ_AND_TRANSACTION,
        needs=("workspace", "connection", "capsule"),
        body=lambda w: {"bindings": [{"provider": "aws", "connection_id": w.values["connection_id"]}]},
    ),
    Scenario("GET", f"{CAPSULE}/state-versions", GET_AND_QUERY, needs=("workspace", "capsule")),
    Scenario("GET", f"{CAPSULE}/outputs", ONE_READ, needs=("workspace", "capsule")),
    Scenario("GET", f"{WS}/deploy-policy", ONE_READ, needs=("workspace",)),
    # billing: the catalog is code, not data; the subscription and the auto top-up are one item each
    Scenario("GET", "/api/v1/billing/tiers", NO_CALLS, anonymous=True),
    Scenario("GET", "/api/v1/billing/pricing", NO_CALLS, anonymous=True),
    Scenario("GET", f"{WS}/billing/subscription", ONE_READ, needs=("workspace",)),
    Scenario("GET", f"{WS}/billing/usage", needs=("workspace",)),
    Scenario("POST", f"{WS}/billing/validate-downgrade", needs=("workspace",), body=lambda w: {"tier": "free"}),
    Scenario("GET", f"{WS}/billing/auto-topup", ONE_READ, needs=("workspace",)),
    Scenario(
        "POST",
        f"{WS}/billing/auto-topup",
        ONE_TRANSACTION,
        needs=("workspace",),
        body=lambda w: {"threshold_tokens": 1000, "package_id": "tokens_500k", "enabled": False},
    ),
    # tokens: a consume reads the balance, then writes it (conditioned on what it read) with its
    # ledger row and audit row in one transaction
    Scenario("GET", f"{WS}/tokens/balance", ONE_READ, needs=("workspace", "tokens")),
    Scenario("GET", f"{WS}/tokens/transactions", ONE_QUERY, needs=("workspace", "tokens")),
    Scenario(
        "POST",
        f"{WS}/tokens/consume",
        READ_AND_TRANSACTION,
        needs=("workspace", "tokens"),
        body=lambda w: {"amount": 10, "action": "bench"},
    ),
    Scenario("PUT", f"{WS}/deploy-policy", needs=("workspace",), body=lambda w: {"allowed_providers": ["aws"]}),
    # dashboard: overview counts and per-agent aggregates over tasks, runs and agents
    Scenario("GET", f"{WS}/dashboard/stats", needs=("workspace", "task", "agent")),
    Scenario("GET", f"{WS}/dashboard/agent-efficiency", needs=("workspace", "task", "agent")),
    Scenario("GET", f"{WS}/dashboard/agent-queue-health", needs=("workspace", "task", "agent")),
    # runs: every lifecycle transition reads the run once and writes one transaction
    Scenario("POST", f"{WS}/runs", ONE_TRANSACTION, needs=("workspace",), body=lambda w: dict(_AGENT_RUN)),
    Scenario("GET", f"{WS}/runs", ONE_QUERY, needs=("workspace", "run")),
    Scenario("GET", RUN, ONE_READ, needs=("workspace", "run")),
    Scenario("POST", f"{RUN}/start", LIMITED_TRANSITION, needs=("workspace", "run")),
    Scenario("POST", f"{RUN}/claim", GET_AND_TRANSACTION, needs=("workspace", "queued_run"), body=_worker),
    Scenario("POST", f"{RUN}/heartbeat", GET_AND_UPDATE, needs=("workspace", "running_run"), body=_worker),
    # a heartbeat reporting usage reads the run with the balance (one BatchGetItem) and writes the
    # liveness, the usage and its ledger row in one transaction
    Scenario(
        "POST",
        f"{RUN}/heartbeat",
        READ_AND_TRANSACTION,
        needs=("workspace", "tokens", "running_run"),
        body=lambda w: {"worker_id": WORKER, "usage": {"tokens": 25}},
    ),
    Scenario("POST", f"{RUN}/pause", GET_AND_TRANSACTION, needs=("workspace", "running_run")),
    Scenario("POST", f"{RUN}/resume", GET_AND_TRANSACTION, needs=("workspace", "paused_run")),
    Scenario("POST", f"{RUN}/cancel", GET_AND_TRANSACTION, needs=("workspace", "running_run")),
    Scenario("POST", f"{RUN}/complete", GET_AND_TRANSACTION, needs=("workspace", "running_run"), body=_worker),
    # a fail's reason and detail are the agent's text: the run is read with the workspace's secrets
    # (to redact them) in one BatchGetItem
    Scenario("POST", f"{RUN}/fail", READ_AND_TRANSACTION, needs=("workspace", "running_run"), body=_worker),
    # the failed run marked retried and the new run written queued, in one transaction
    Scenario("POST", f"{RUN}/retry", LIMITED_TRANSITION, needs=("workspace", "failed_run")),
    # Reviews and git gates read the run and the workspace (auto_push) in one BatchGetItem.
    Scenario("POST", f"{RUN}/approve", READ_AND_TRANSACTION, needs=("workspace", "gated_run")),
    Scenario("POST", f"{RUN}/reject", READ_AND_TRANSACTION, needs=("workspace", "gated_run")),
    Scenario("POST", f"{RUN}/commit", READ_AND_TRANSACTION, needs=("workspace", "approved_run")),
    # a push also needs the workspace's auto_push: the run and the workspace in one read
    Scenario("POST", f"{RUN}/push", READ_AND_TRANSACTION, needs=("workspace", "auto_push", "approved_run")),
    # input requests: asking and answering each read what they change once and write one transaction
    Scenario("POST", f"{RUN}/input-requests", ASK, needs=("workspace", "running_run"), body=_question),
    Scenario("GET", f"{RUN}/input-requests", GET_AND_QUERY, needs=("workspace", "asked_run")),
    Scenario("GET", f"{RUN}/input-requests/{{request_id}}", ONE_READ, needs=("workspace", "asked_run")),
    Scenario(
        "POST",
        f"{RUN}/input-requests/{{request_id}}/answer",
        READ_AND_TRANSACTION,
        needs=("workspace", "asked_run"),
        body=lambda w: {"answer": "main"},
    ),
    # run telemetry: an append of 100 events is one read (the run with the workspace's secrets, in one
    # BatchGetItem) and one TransactWriteItems; a backfill page is one Query
    Scenario(
        "POST",
        f"{WS}/runs/{{run_id}}/events",
        READ_AND_TRANSACTION,
        needs=("workspace", "telemetry_run"),
        body=lambda w: _hundred_events(),
    ),
    Scenario("GET", f"{WS}/runs/{{run_id}}/events", ONE_QUERY, needs=("workspace", "telemetry_run", "run_events")),
    Scenario("GET", f"{WS}/runs/{{run_id}}/events/stream", needs=("workspace", "telemetry_run", "run_events")),
    Scenario("GET", f"{WS}/runs/{{run_id}}/files", ONE_QUERY, needs=("workspace", "telemetry_run", "run_events")),
    Scenario("GET", f"{WS}/runs/{{run_id}}/commands", ONE_QUERY, needs=("workspace", "telemetry_run", "run_events")),
    Scenario("GET", f"{WS}/runs/{{run_id}}/summary", ONE_READ, needs=("workspace", "telemetry_run")),
    Scenario(
        "GET", f"{RUN}/files/{{file_id}}", ONE_READ, needs=("workspace", "telemetry_run", "run_events", "run_file")
    ),
    Scenario("GET", f"{RUN}/diff", ONE_QUERY, needs=("workspace", "telemetry_run", "run_events")),
    Scenario("GET", f"{RUN}/snapshots", ONE_QUERY, needs=("workspace", "telemetry_run", "run_events")),
    Scenario(
        "GET",
        f"{RUN}/commands/{{command_id}}",
        ONE_READ,
        needs=("workspace", "telemetry_run", "run_events", "run_command"),
    ),
    # the summary is redacted with the workspace's secrets: the run with them, then one transaction
    Scenario("PUT", f"{RUN}/summary", READ_AND_TRANSACTION, needs=("workspace", "telemetry_run")),
    # an upload URL for a live run: the run read, then the artifact and its audit row in one transaction
    Scenario("POST", f"{RUN}/artifacts", READ_AND_TRANSACTION, needs=("workspace", "telemetry_run")),
    # docs: a file, no table
    Scenario("GET", "/api/openapi.json", NO_CALLS, anonymous=True),
    Scenario("GET", "/api/docs", NO_CALLS, anonymous=True),
]


# ---------------------------------------------------------------- counting


@dataclass
class Call:
    function: str
    operation: str
    detail: str = ""  # what a transaction holds, e.g. "2 ConditionCheck + 2 Put"
    keys: tuple[tuple[str, str], ...] = ()  # what a BatchGetItem asked for, as (PK, SK)
    # How a token check went out, if this call is one on its own: "beside" the route's call (from
    # the store's check thread) or "alone" (before a write, or when the route read nothing).
    check: str = ""

    @property
    def beside(self) -> bool:
        return self.check == "beside"


@dataclass
class Counter:
    active: bool = False
    calls: list[Call] = field(default_factory=list)
    _transaction: str = ""
    # The keys a BatchGetItem is about to ask for, per thread: a check's call from the store's
    # check thread must not lend its keys to the Query the request thread sends meanwhile.
    _batch: threading.local = field(default_factory=threading.local)

    def hook(self, model: Any, **_: Any) -> None:
        """`before-call.dynamodb`: once per API call, whatever its retries."""
        function = _invoking.get()
        if not self.active or function is None:
            return
        detail = self._transaction if model.name == "TransactWriteItems" else ""
        keys = getattr(self._batch, "keys", ()) if model.name == "BatchGetItem" else ()
        self.calls.append(Call(function, model.name, detail, keys, _check_alone()))
        self._batch.keys = ()

    def batch_hook(self, params: dict[str, Any], **_: Any) -> None:
        """`before-parameter-build.dynamodb.BatchGetItem`: the keys asked for."""
        self._batch.keys = tuple(
            (key["PK"]["S"], key["SK"]["S"])
            for request in (params.get("RequestItems") or {}).values()
            for key in request.get("Keys", [])
        )

    def transaction_hook(self, params: dict[str, Any], **_: Any) -> None:
        """`before-parameter-build.dynamodb.TransactWriteItems`: what the transaction holds."""
        kinds: dict[str, int] = {}
        for item in params.get("TransactItems", []):
            for kind in item:
                kinds[kind] = kinds.get(kind, 0) + 1
        self._transaction = " + ".join(f"{n} {kind}" for kind, n in kinds.items())


def _check_alone() -> str:
    """Whether the call being made is a token check on its own, told by who is making it."""
    if threading.current_thread().name.startswith(CHECK_THREAD):
        return "beside"
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "settle_deferred" or frame.f_code.co_name == "_confirm_before_write":
            return "alone"
        frame = frame.f_back  # type: ignore[assignment]
    return ""


class CountingLambdas(Lambdas):
    """Tags every DynamoDB call with the function that made it."""

    def invoke(self, function: template.Function | str, event: dict[str, Any]) -> Any:
        name = function if isinstance(function, str) else function.logical_id
        token = _invoking.set(name)
        try:
            return super().invoke(function, event)
        finally:
            _invoking.reset(token)


@contextmanager
def local_stack() -> Iterator[tuple[HttpApi, Counter]]:
    """A fresh emulated stack whose DynamoDB calls are counted."""
    ensure_layer_on_path()
    from agentplane import clients, idempotency, ratelimit
    from agentplane.settings import get_settings

    mock = aws.start()
    events = boto3._get_default_session().events
    counter = Counter()
    try:
        aws.provision(SIGNING_SECRET)
        get_settings.cache_clear()  # this stack's KMS key and secret, not a previous one's
        # Clients made from the default session from here on (the store's included) carry the hook.
        events.register("before-call.dynamodb", counter.hook)
        events.register("before-parameter-build.dynamodb.TransactWriteItems", counter.transaction_hook)
        events.register("before-parameter-build.dynamodb.BatchGetItem", counter.batch_hook)
        clients.reset()  # clients built earlier belong to the previous scenario's emulation
        idempotency.reset()
        ratelimit.reset_local_counters()
        with quiet_functions():
            yield HttpApi(CountingLambdas(template.functions())), counter
    finally:
        # The boto3 session outlives the mock (devstack keeps one per process): drop this counter.
        events.unregister("before-call.dynamodb", counter.hook)
        events.unregister("before-parameter-build.dynamodb.TransactWriteItems", counter.transaction_hook)
        events.unregister("before-parameter-build.dynamodb.BatchGetItem", counter.batch_hook)
        stepfunctions.end_running_executions()  # no execution of this stack runs on into the next
        mock.stop()
        clients.reset()
        idempotency.reset()
        get_settings.cache_clear()


# ---------------------------------------------------------------- the world a route needs


@contextmanager
def quiet_functions() -> Iterator[None]:
    """The functions' own log lines would drown the figures; restored afterwards."""
    import warnings

    from agentplane.observability import logger

    level = logger.log_level
    logger.setLevel("ERROR")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            yield
    finally:
        logger.setLevel(level)


class Skip(Exception):
    """The scenario cannot run yet (its route, or one it needs to set up, is not implemented)."""


# Which built value fills a path parameter (a parameter not named here is looked up by its name).
PATH_VALUES = {
    "user_id": "member_id",
    "token": "path_token",  # an invite's token, or a thread share's
    "number": "sprint_number",
    "name": "agent_name",
    "key": "memory_key",
}


class World:
    def __init__(self, http: HttpApi) -> None:
        self.http = http
        self.values: dict[str, str] = {}

    def path(self, template_path: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            found = self.values.get(PATH_VALUES.get(name, name))
            if found is None:
                raise Skip(f"nothing built for {{{name}}}")
            return found

        return re.sub(r"\{(\w+)\}", value, template_path)

    def request(
        self,
        method: str,
        template_path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        query: str = "",
    ) -> HttpResponse:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        raw = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            raw = json.dumps(body)
        url = self.path(template_path) + (f"?{query}" if query else "")
        return self.http.handle(method, url, headers, raw, source_ip="198.51.100.7")

    def sample(self, method: str, template_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        route = apps.find_route(method, template_path)
        if route is None:
            raise Skip(f"{method} {template_path} is not implemented")
        model = apps.body_model(route)
        body = apps.sample_body(model) if model else {}
        fields = getattr(model, "model_fields", {})
        body.update({k: v for k, v in (overrides or {}).items() if k in fields})
        return body

    def setup(self, method: str, template_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create something through the API; its answer's `data`."""
        body = self.sample(method, template_path, overrides)
        response = self.request(method, template_path, body, self.values.get("token"))
        if response.status >= 300:
            raise Skip(f"setting up with {method} {template_path} answered {response.status}")
        return dict(response.json["data"])

    def register(self, username: str) -> dict[str, Any]:
        account = {**_new_account(self), "username": username, "email": f"{username}@example.com"}
        created = self.request("POST", "/api/v1/auth/register", account)
        if created.status != 201:
            raise Skip(f"registering answered {created.status}")
        login = self.request("POST", "/api/v1/auth/login", {"email": account["email"], "password": PASSWORD})
        if login.status != 200:
            raise Skip(f"logging in answered {login.status}")
        return dict(login.json["data"])


def _user(world: World) -> None:
    session = world.register("benchuser")
    world.values.update(
        token=session["token"],
        refresh_token=session["refresh_token"],
        user_id=session["user"]["id"],
        email=session["user"]["email"],
    )


def _workspace(world: World) -> None:
    world.values["ws"] = world.setup("POST", "/api/v1/workspaces", {"name": "Acme"})["id"]


def _task(world: World) -> None:
    world.values["task_id"] = world.setup("POST", f"{WS}/tasks", {"title": "Measure the store"})["id"]


def _api_key(world: World) -> None:
    world.values["key_id"] = world.setup("POST", f"{WS}/api-keys", {"name": "ci"})["id"]


def _pat(world: World) -> None:
    world.values["pat_id"] = world.setup("POST", "/api/v1/me/personal-access-tokens", {"name": "laptop"})["id"]


def _team(world: World) -> None:
    world.values["team_id"] = world.setup("POST", f"{WS}/teams", {"name": "Platform"})["id"]


def _invite(world: World) -> None:
    invite = world.setup("POST", f"{WS}/invites", {"email": "invitee@example.com", "role": "member"})
    world.values["invite_id"] = invite["id"]
    if invite.get("token"):
        world.values["path_token"] = invite["token"]


def _newcomer(world: World) -> None:
    """A registered user who is not in the workspace yet (the member a request adds)."""
    session = world.register("newcomer")
    world.values.update(
        member_id=session["user"]["id"], member_email=session["user"]["email"], newcomer_token=session["token"]
    )


def _member(world: World) -> None:
    _newcomer(world)
    overrides = {"user_id": world.values["member_id"], "email": world.values["member_email"], "role": "member"}
    world.setup("POST", f"{WS}/members", overrides)


def _team_member(world: World) -> None:
    _member(world)
    world.setup("POST", f"{WS}/teams/{{team_id}}/members", {"user_id": world.values["member_id"]})


def _hundred_events() -> dict[str, Any]:
    return {
        "events": [
            {"event_type": "log", "severity": "info", "path": f"src/module_{n}.py", "data": {"line": n}}
            for n in range(100)
        ]
    }


def _run_events(world: World) -> None:
    """The run's telemetry: 100 events, a changed file, a command and a snapshot."""
    events = _hundred_events()["events"] + [
        {"event_type": "file_changed", "data": {"path": "src/app.py", "change": "modified", "diff": "+x"}},
        {"event_type": "command_executed", "data": {"command": "pytest -q", "exit_code": 0, "stdout": "ok"}},
        {"event_type": "snapshot_created", "data": {"label": "before refactor", "files": ["src/app.py"]}},
    ]
    response = world.request("POST", f"{WS}/runs/{{run_id}}/events", {"events": events}, world.values["token"])
    if response.status >= 300:
        raise Skip(f"appending events answered {response.status}")


def _act(world: World, method: str, template_path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request the scenario depends on, with exactly this body; its answer's `data`."""
    response = world.request(method, template_path, body, world.values["token"])
    if response.status >= 300:
        raise Skip(f"setting up with {method} {template_path} answered {response.status}")
    data = response.json.get("data") if response.json else None
    return dict(data) if isinstance(data, dict) else {}


def _do(world: World, method: str, template_path: str, body: dict[str, Any] | None = None) -> None:
    _act(world, method, template_path, body)


def _creates(
    value: str, method: str, template_path: str, overrides: dict[str, Any] | None = None, field: str = "id"
) -> Callable[[World], None]:
    """A builder that creates something from the route's sample body (with `overrides`) and keeps its id."""

    def build(world: World) -> None:
        world.values[value] = str(world.setup(method, template_path, overrides)[field])

    return build


def _in_progress_task(world: World) -> None:
    world.values["task_id"] = _act(world, "POST", f"{WS}/tasks", {"title": "Fix login", "status": "in_progress"})["id"]


def _review_task(world: World) -> None:
    _in_progress_task(world)
    _act(world, "POST", f"{WS}/tasks/{{task_id}}/review-report", {"summary": "Fixed, with a test"})


def _doc(world: World) -> None:
    world.values["slug"] = "readme"
    _act(world, "PUT", f"{PROJECT}/docs/{{slug}}", _doc_body("v1"))


def _snapshot(world: World) -> None:
    _doc(world)
    world.values["snapshot_id"] = _act(world, "POST", f"{PROJECT}/snapshots", {"label": "before refactor"})["id"]


def _sprint(world: World, status: str = "active") -> None:
    sprint = _act(world, "POST", f"{WS}/sprints", {"number": 1, "name": "Sprint 1", "status": status})
    world.values["sprint_number"] = str(sprint["number"])


def _sprint_tasks(world: World) -> None:
    """Two tasks of the sprint, one of them done."""
    number = int(world.values["sprint_number"])
    _act(world, "POST", f"{WS}/tasks", {"title": "Plan the sprint", "sprint": number, "status": "done"})
    _act(world, "POST", f"{WS}/tasks", {"title": "Build the sprint", "sprint": number, "story_points": 3})


def _completed(world: World) -> None:
    for phase in ("review", "retrospective", "completed"):
        _act(world, "PATCH", f"{WS}/sprints/{{number}}", {"status": phase})


def _agent_task(world: World) -> None:
    world.values["task_id"] = _act(world, "POST", f"{WS}/tasks", {"title": "Measure next", "owner": "builder"})["id"]


def _share(world: World) -> None:
    share = _act(world, "POST", f"{THREAD}/share", {})
    world.values.update(share_id=share["id"], path_token=share["token"])


def _agent(world: World) -> None:
    world.values["agent_name"] = _act(world, "POST", f"{WS}/agents", {"name": "builder", "role": "builder"})["name"]


def _memory(world: World) -> None:
    world.values["memory_key"] = "conventions"
    memory = _act(world, "PUT", f"{AGENT}/memories/{{key}}", {**_memory_body(world), "shared": True})
    world.values["memory_id"] = memory["id"]


def _claimed_job(world: World) -> None:
    _creates("job_id", "POST", f"{WS}/queue/jobs", {"task_type": "report"})(world)
    claimed = _act(world, "POST", f"{WS}/queue/claim", {"worker_id": WORKER})
    if not claimed.get("jobs"):
        raise Skip("claiming the job answered no job")


def _run(world: World, **fields: Any) -> None:
    body = {**_AGENT_RUN, **fields}
    world.values["run_id"] = _act(world, "POST", f"{WS}/runs", body)["id"]


def _awaiting(world: World, phase: str) -> None:
    """What the run's execution does when it enters a wait: record its task token on the run.
    The bench stack runs no executions, so the builder stands in for it; the API then resolves the
    wait with that token instead of reading the run again to look for one."""
    from agentplane import keys, raw_items

    ws, run_id = world.values["ws"], world.values["run_id"]
    raw_items.update(
        keys.run_key(ws, run_id), raw_items.Update(set={"task_token": f"bench-{phase}", "task_phase": phase})
    )


def _queued_run(world: World, **fields: Any) -> None:
    _run(world, **fields)
    _act(world, "POST", f"{RUN}/start")
    _awaiting(world, "claim")


def _running_run(world: World, **fields: Any) -> None:
    """A run an agent has claimed (so it also takes telemetry events)."""
    _queued_run(world, **fields)
    _act(world, "POST", f"{RUN}/claim", {"worker_id": WORKER})
    _awaiting(world, "work")


def _asked_run(world: World) -> None:
    """A running run whose agent waits for an answer, the execution in its input wait."""
    _running_run(world)
    world.values["request_id"] = _act(world, "POST", f"{RUN}/input-requests", _question(world))["id"]
    _awaiting(world, "input")


def _paused_run(world: World) -> None:
    _running_run(world)
    _act(world, "POST", f"{RUN}/pause")


def _failed_run(world: World) -> None:
    _running_run(world)
    _act(world, "POST", f"{RUN}/fail", {"worker_id": WORKER, "reason": "tests_failed"})


def _gated_run(world: World) -> None:
    """A run that needs approval, its work done: awaiting approval."""
    _running_run(world, requires_approval=True)
    _act(world, "POST", f"{RUN}/complete", {"worker_id": WORKER, "summary": "Login page built"})
    _awaiting(world, "approval")


def _approved_run(world: World) -> None:
    _gated_run(world)
    _act(world, "POST", f"{RUN}/approve", {"notes": "Looks good"})


def _tokens(world: World) -> None:
    """Tokens granted to the workspace (as a paid invoice would)."""
    from agentplane.logic.billing import tokens

    tokens.grant(world.values["ws"], 100_000, reason="bench")


def _auto_push(world: World) -> None:
    _act(world, "PATCH", WS, {"auto_push": True})


def _listed(value: str, template_path: str) -> Callable[[World], None]:
    """A builder that keeps the id of the first item a list answers."""

    def build(world: World) -> None:
        response = world.request("GET", template_path, None, world.values["token"])
        items = response.json.get("data") if response.status == 200 and response.json else None
        if not items:
            raise Skip(f"GET {template_path} listed nothing")
        world.values[value] = str(items[0]["id"])

    return build


BUILDERS: dict[str, Callable[[World], None]] = {
    # platform
    "workspace": _workspace,
    "task": _task,
    "agent_task": _agent_task,
    "api_key": _api_key,
    "pat": _pat,
    "team": _team,
    "invite": _invite,
    "newcomer": _newcomer,
    "member": _member,
    "team_member": _team_member,
    "device": _creates("device_id", "POST", "/api/v1/me/devices", _DEVICE),
    # tasks, stories, user tasks
    "in_progress_task": _in_progress_task,
    "review_task": _review_task,
    "story": _creates("story_id", "POST", f"{WS}/stories", {"title": "Sign in with a passkey"}),
    "user_task": _creates("user_task_id", "POST", f"{WS}/user-tasks", {"title": "Grant the deploy role"}),
    # projects and snapshots
    "project": _creates(
        "project_id",
        "POST",
        f"{WS}/projects",
        {"name": "Mobile app", "repository_url": "https://github.com/acme/mobile"},
    ),
    "doc": _doc,
    "snapshot": _snapshot,
    # sprints
    "sprint": _sprint,
    "planning_sprint": lambda world: _sprint(world, "planning"),
    "sprint_tasks": _sprint_tasks,
    "completed": _completed,
    "retro": lambda world: _do(world, "POST", f"{WS}/sprints/{{number}}/retro", _RETRO),
    # threads and team messages
    "thread": _creates("thread_id", "POST", f"{WS}/threads", {"title": "Release plan"}),
    "thread_message": _creates("message_id", "POST", f"{THREAD}/messages", {"content": "Ship on Friday?"}),
    "share": _share,
    "team_message": _creates("team_message_id", "POST", f"{WS}/messages", {"content": "Deploy is green"}),
    # knowledge
    "adr": _creates(
        "adr_id",
        "POST",
        f"{WS}/adrs",
        {"title": "Use one table", "context": "Many families", "decision": "Single table", "rationale": "Cheap"},
    ),
    "rule": _creates("rule_id", "POST", f"{WS}/rules", {"content": "Run the tests before review"}),
    "failure": _creates("failure_id", "POST", f"{WS}/failures", {"title": "Migration timed out"}),
    # notifications, activity
    "notification": _creates("notification_id", "POST", f"{WS}/notifications", {"title": "Run finished"}),
    "activity": _creates("activity_id", "POST", f"{WS}/activity", {"type": "task.started", "message": "Started"}),
    # agents and memories
    "agent": _agent,
    "progress": lambda world: _do(world, "POST", f"{WS}/agents/progress", _progress_body(world)),
    "agent_template": _creates("template_id", "POST", f"{WS}/agent-templates", {"name": "Reviewer"}),
    "memory": _memory,
    # queue and schedules
    "queue_job": _creates("job_id", "POST", f"{WS}/queue/jobs", {"task_type": "report"}),
    "claimed_job": _claimed_job,
    "schedule": _creates("schedule_id", "POST", f"{WS}/schedules", _SCHEDULE),
    # deploy
    "connection": _creates("connection_id", "POST", f"{WS}/connections", _CONNECTION),
    "capsule": _creates("capsule_id", "POST", f"{WS}/capsules", _CAPSULE),
    "bindings": lambda world: _do(
        world,
        "PUT",
        f"{CAPSULE}/bindings",
        {"bindings": [{"provider": "aws", "connection_id": world.values["connection_id"]}]},
    ),
    # runs
    "run": _run,
    "queued_run": _queued_run,
    "running_run": _running_run,
    "asked_run": _asked_run,
    "telemetry_run": _running_run,
    "paused_run": _paused_run,
    "failed_run": _failed_run,
    "gated_run": _gated_run,
    "approved_run": _approved_run,
    "auto_push": _auto_push,
    "tokens": _tokens,
    "run_events": _run_events,
    "run_file": _listed("file_id", f"{RUN}/files"),
    "run_command": _listed("command_id", f"{RUN}/commands"),
}


# ---------------------------------------------------------------- running


@dataclass
class Result:
    scenario: Scenario
    status: int | None = None
    calls: list[Call] = field(default_factory=list)
    check_keys: frozenset[tuple[str, str]] = frozenset()  # the caller's token, workspace, membership
    skipped: str | None = None

    @staticmethod
    def _is_check(call: Call) -> bool:
        return bool(call.check)

    @property
    def handler(self) -> list[Call]:
        """The route's own calls: the check's own BatchGetItem left out, and a GetItem that took the
        check along (a BatchGetItem of the item and the check's keys) counted as the GetItem it is."""
        own = []
        for call in self.calls:
            if self._is_check(call):
                continue
            carried = [key for key in call.keys if key in self.check_keys]
            if carried and len(call.keys) - len(carried) <= 1:
                call = Call(call.function, "GetItem")
            own.append(call)
        return own

    @property
    def handler_ops(self) -> list[str]:
        return [call.operation for call in self.handler]

    @property
    def check(self) -> str:
        """How the token check travelled (see the module docstring)."""
        for index, call in enumerate(self.calls):
            if self._is_check(call):
                if call.beside:
                    return "beside"
                return "before" if index < len(self.calls) - 1 else "after"
            if any(key in self.check_keys for key in call.keys):
                return "in read"
        return "none"

    @property
    def round_trips(self) -> int:
        return sum(1 for call in self.calls if not call.beside)

    @property
    def verdict(self) -> str:
        if self.skipped:
            return "skipped"
        if self.status is None or self.status >= 500:
            return "SERVER ERROR"
        if self.status >= 400:
            return f"answered {self.status}"
        target = self.scenario.target
        if target is None:
            return "-"
        return "ok" if target.met_by(self.handler_ops) else "MISSED"


def _check_keys(world: World, token: str | None) -> frozenset[tuple[str, str]]:
    from agentplane import keys
    from agentplane.auth.secrets import hash_secret

    if not token:
        return frozenset()
    wanted = [keys.token_key(hash_secret(token))]
    ws = world.values.get("ws")
    if ws:
        wanted.append(keys.workspace_key(ws))
        for user_id in (world.values.get("user_id"), world.values.get("member_id")):
            if user_id:
                wanted.append(keys.member_key(ws, user_id))
    return frozenset((key["PK"], key["SK"]) for key in wanted)


def _seen_by_the_functions(world: World, token: str | None) -> None:
    """One read as the caller, as steady traffic has: the functions have seen this token."""
    from agentplane.auth import caller

    caller.forget_all()
    if not token:
        return
    world.request("GET", "/api/v1/me", None, token)
    if "ws" in world.values:
        world.request("GET", WS, None, token)


def run(scenario: Scenario) -> Result:
    result = Result(scenario)
    if scenario.route_key not in {route.route_key for route in template.http_routes()}:
        result.skipped = "not in template.yaml"
        return result
    if apps.find_route(scenario.method, scenario.path) is None:
        result.skipped = "not implemented"
        return result
    with local_stack() as (http, counter):
        world = World(http)
        try:
            _user(world)
            for need in scenario.needs:
                BUILDERS[need](world)
            body = None
            if scenario.method in ("POST", "PUT", "PATCH"):
                body = scenario.body(world) if scenario.body else world.sample(scenario.method, scenario.path)
            world.path(scenario.path)  # raises Skip when a path value could not be built
        except Skip as reason:
            result.skipped = str(reason)
            return result
        from agentplane import ratelimit

        token = None if scenario.anonymous else world.values[scenario.caller]
        _seen_by_the_functions(world, token)
        ratelimit.reset_local_counters()
        counter.active = True
        response = world.request(scenario.method, scenario.path, body, token, scenario.query)
        counter.active = False
        result.status = response.status
        result.calls = list(counter.calls)
        result.check_keys = _check_keys(world, token)
    return result


def find(method: str, path: str) -> Scenario:
    return next(s for s in SCENARIOS if s.method == method and s.path == path)


def _describe(calls: list[Call]) -> str:
    if not calls:
        return "0"
    parts = [call.operation + (f"[{call.detail}]" if call.detail else "") for call in calls]
    return f"{len(calls)}: " + ", ".join(parts)


def report(scenarios: list[Scenario] | None = None) -> bool:
    with contextlib.redirect_stdout(io.StringIO()):  # the cold-start metric is printed, not logged
        results = [run(scenario) for scenario in scenarios or SCENARIOS]
    print("DynamoDB calls per request (fresh data per route; the caller's token already seen by the functions)\n")
    rows = [("route", "status", "token check", "round trips", "route's calls", "target", "verdict")]
    for r in results:
        if r.skipped:
            rows.append((r.scenario.route_key, "-", "", "", "", "", f"skipped: {r.skipped}"))
            continue
        target = r.scenario.target.label if r.scenario.target else "-"
        rows.append(
            (
                r.scenario.route_key,
                str(r.status),
                r.check,
                str(r.round_trips),
                _describe(r.handler),
                target,
                r.verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[6])
    measured = [r for r in results if not r.skipped and r.status is not None and r.status < 400]
    reads = [r for r in measured if r.scenario.method == "GET" and not r.scenario.anonymous]
    extra = [r for r in reads if r.round_trips > len(r.handler)]
    print(
        f"\n  reads: {len(reads)} measured; the token check added a round trip to {len(extra)} of them"
        + (f" ({', '.join(r.scenario.route_key for r in extra)})" if extra else "")
    )
    covered = {r.scenario.route_key for r in results}
    unmeasured = [route.route_key for route in template.http_routes() if route.route_key not in covered]
    if unmeasured and scenarios is None:
        print(f"\n  routes with no scenario yet: {len(unmeasured)}")
        for route_key in unmeasured:
            print(f"    {route_key}")
    print()
    return not any(r.verdict in ("MISSED", "SERVER ERROR") for r in results)
