"""Single-table keys: every prefix and key builder lives here and nowhere else.

Every item that belongs to a workspace carries the workspace id in its partition key, so no query
built from these functions can reach another tenant's items. Access patterns are listed in
docs/access-patterns.md.
"""

from __future__ import annotations

import zlib
from typing import TypedDict

# Attribute names of the table and its indexes.
PK, SK = "PK", "SK"
GSI1PK, GSI1SK, GSI1 = "GSI1PK", "GSI1SK", "GSI1"
GSI2PK, GSI2SK, GSI2 = "GSI2PK", "GSI2SK", "GSI2"
GSI3PK, GSI3SK, GSI3 = "GSI3PK", "GSI3SK", "GSI3"
TTL = "ttl"
ENTITY = "entity"


class Key(TypedDict):
    PK: str
    SK: str


def key(pk: str, sk: str) -> Key:
    return {"PK": pk, "SK": sk}


# --- global (not workspace-owned) items ---------------------------------------------------
USER = "USER#"
PROFILE = "PROFILE"
UNIQUE = "UNIQUE#"
TOKEN = "TOKEN#"
SITE = "SITE"
RATE = "RATE#"


def user_key(user_id: str) -> Key:
    return key(f"{USER}{user_id}", PROFILE)


def user_pk(user_id: str) -> str:
    return f"{USER}{user_id}"


def unique_key(kind: str, value: str) -> Key:
    """Guards a globally unique value (email, username) with a conditional put."""
    return key(f"{UNIQUE}{kind}#{value.lower()}", "UNIQUE")


def token_key(token_hash: str) -> Key:
    """Every bearer secret (session, refresh, PAT, API key, agent key, invite, share) is found by hash."""
    return key(f"{TOKEN}{token_hash}", "TOKEN")


def pat_key(user_id: str, pat_id: str) -> Key:
    return key(f"{USER}{user_id}", f"PAT#{pat_id}")


def pat_prefix() -> str:
    return "PAT#"


def session_key(user_id: str, session_id: str) -> Key:
    """Index of a user's sessions, so logout from all devices can find them without a scan."""
    return key(f"{USER}{user_id}", f"SESSION#{session_id}")


def session_prefix() -> str:
    return "SESSION#"


def device_key(user_id: str, device_id: str) -> Key:
    return key(f"{USER}{user_id}", f"DEVICE#{device_id}")


def site_settings_key() -> Key:
    return key(SITE, "SETTINGS")


def rate_key(bucket: str, window: int) -> Key:
    return key(f"{RATE}{bucket}", f"W#{window}")


def rate_log_key(bucket: str) -> Key:
    return key(f"{RATE}{bucket}", "LOG")


# --- workspace-owned items --------------------------------------------------------------------
WS = "WS#"


def ws_pk(ws_id: str) -> str:
    return f"{WS}{ws_id}"


def workspace_key(ws_id: str) -> Key:
    return key(ws_pk(ws_id), "META")


def member_key(ws_id: str, user_id: str) -> Key:
    return key(ws_pk(ws_id), f"MEMBER#{user_id}")


MEMBER_PREFIX = "MEMBER#"


def member_of_user_gsi(user_id: str) -> str:
    """GSI1 partition listing a user's memberships (`me/workspaces`)."""
    return f"{USER}{user_id}#WORKSPACES"


def invite_key(ws_id: str, invite_id: str) -> Key:
    return key(ws_pk(ws_id), f"INVITE#{invite_id}")


INVITE_PREFIX = "INVITE#"


def team_key(ws_id: str, team_id: str) -> Key:
    return key(ws_pk(ws_id), f"TEAM#{team_id}")


TEAM_PREFIX = "TEAM#"


def team_member_key(ws_id: str, team_id: str, user_id: str) -> Key:
    """Right after its team's item, so one Query reads a team with its members."""
    return key(ws_pk(ws_id), f"TEAM#{team_id}#MEMBER#{user_id}")


def team_member_prefix(team_id: str) -> str:
    return f"TEAM#{team_id}#MEMBER#"


def team_with_members(team_id: str) -> tuple[str, str]:
    """The sort-key range (`sk_between`) of a team's item followed by its members."""
    return f"TEAM#{team_id}", f"TEAM#{team_id}#MEMBER$"


def common_env_key(ws_id: str) -> Key:
    return key(ws_pk(ws_id), "COMMONENV")


def api_key_key(ws_id: str, key_id: str) -> Key:
    return key(ws_pk(ws_id), f"APIKEY#{key_id}")


API_KEY_PREFIX = "APIKEY#"


def api_key_usage_pk(ws_id: str, key_id: str) -> str:
    return f"{WS}{ws_id}#APIKEYUSAGE#{key_id}"


def audit_pk(ws_id: str) -> str:
    return f"{WS}{ws_id}#AUDIT"


def audit_key(ws_id: str, audit_id: str) -> Key:
    return key(audit_pk(ws_id), audit_id)


def task_key(ws_id: str, task_id: str) -> Key:
    return key(ws_pk(ws_id), f"TASK#{task_id}")


TASK_PREFIX = "TASK#"


def task_status_gsi(ws_id: str, status: str) -> str:
    """GSI1 partition: a workspace's live tasks in one status, newest last."""
    return f"{WS}{ws_id}#TASKSTATUS#{status}"


def task_list_gsi(ws_id: str) -> str:
    """GSI2 partition: a workspace's live (not deleted) tasks in creation order."""
    return f"{WS}{ws_id}#TASKS"


def task_sprint_gsi(ws_id: str, sprint: int) -> str:
    """GSI3 partition: a workspace's live tasks planned into one sprint (sprint analytics)."""
    return f"{WS}{ws_id}#SPRINTTASKS#{sprint}"


def site_owner_key() -> Key:
    """Claimed once, by the first account ever registered."""
    return key(SITE, "OWNER")


# Each family's keys go below its marker line (keep the marker).
# @keys:me
def device_prefix() -> str:
    """A user's registered push devices (`device_key`), listed when notifying or erasing them."""
    return "DEVICE#"


def push_token_claim_key(push_token_digest: str) -> Key:
    """Which user a push token is registered to: a device handed to someone else moves with it."""
    return unique_key("push_token", push_token_digest)


def account_audit_pk(user_id: str) -> str:
    """A person's own audit trail: changes to their account, which belong to no workspace."""
    return f"{USER}{user_id}#AUDIT"


def account_audit_key(user_id: str, audit_id: str) -> Key:
    return key(account_audit_pk(user_id), audit_id)


# @keys:api_keys
def api_key_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's API keys that are not deleted (revoked ones included)."""
    return f"{WS}{ws_id}#APIKEYS"


def api_key_live_gsi(ws_id: str) -> str:
    """GSI2 partition: a workspace's API keys that are neither deleted nor revoked."""
    return f"{WS}{ws_id}#LIVEAPIKEYS"


API_KEY_USAGE_MINUTE = "MIN#"


def api_key_usage_key(ws_id: str, key_id: str, minute: str) -> Key:
    """One key's request count in one UTC minute (`minute` like 2025-01-31T09:05Z)."""
    return key(api_key_usage_pk(ws_id, key_id), f"{API_KEY_USAGE_MINUTE}{minute}")


def api_key_usage_upper_bound() -> str:
    """A sort key after every minute bucket of a key (the top of a `sk_between` over them)."""
    return f"{API_KEY_USAGE_MINUTE}~"


def api_key_usage_total_key(ws_id: str, key_id: str) -> Key:
    """A key's running total, whether it is deleted, and how far its minutes are folded in. Sorted
    after every minute bucket, so one newest-first Query reads it with the latest minutes."""
    return key(api_key_usage_pk(ws_id, key_id), "TOTAL")


# @keys:workspaces
TASK_TEMPLATE_PREFIX = "TASKTEMPLATE#"


def task_template_key(ws_id: str, template_id: str) -> Key:
    """A task template (Toban's `task_templates`), kept by workspace export and import."""
    return key(ws_pk(ws_id), f"{TASK_TEMPLATE_PREFIX}{template_id}")


def invite_pending_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's pending invites (removed on accept or revoke)."""
    return f"{WS}{ws_id}#PENDINGINVITES"


def invite_email_key(ws_id: str, email: str) -> Key:
    """Guards one live invite per email per workspace with a conditional put."""
    return key(ws_pk(ws_id), f"INVITEEMAIL#{email.lower()}")


def team_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's teams in creation order (their members share the base range)."""
    return f"{WS}{ws_id}#TEAMS"


def teams_of_member_gsi(ws_id: str, user_id: str) -> str:
    """GSI1 partition: the teams one member belongs to in one workspace (cleanup on removal)."""
    return f"{WS}{ws_id}#USERTEAMS#{user_id}"


def member_of_user_sort_key(ws_id: str) -> str:
    """GSI1 sort key of a membership in its user's partition (`member_of_user_gsi`)."""
    return ws_pk(ws_id)


# @keys:projects
PROJECT_PREFIX = "PROJECT#"
PROJECT_NAME_PREFIX = "PROJECTNAME#"
DOC_PREFIX = "DOC#"
DOC_BODY_PREFIX = "DOCBODY#"
CHANGELOG_PREFIX = "CHANGE#"
SNAPSHOT_PREFIX = "SNAPSHOT#"


def project_key(ws_id: str, project_id: str) -> Key:
    return key(ws_pk(ws_id), f"{PROJECT_PREFIX}{project_id}")


def project_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's live (not deleted) projects in creation order."""
    return f"{WS}{ws_id}#PROJECTS"


def project_name_key(ws_id: str, name: str) -> Key:
    """Guards a project name (case-insensitive) unique within its workspace."""
    return key(ws_pk(ws_id), f"{PROJECT_NAME_PREFIX}{name.strip().casefold()}")


def project_pk(ws_id: str, project_id: str) -> str:
    """Partition of one project's docs, doc bodies and changelog."""
    return f"{WS}{ws_id}#{PROJECT_PREFIX}{project_id}"


def doc_key(ws_id: str, project_id: str, slug: str) -> Key:
    return key(project_pk(ws_id, project_id), f"{DOC_PREFIX}{slug}")


def doc_body_key(ws_id: str, project_id: str, content_sha256: str) -> Key:
    """A doc body, stored once per distinct content and never changed, so snapshots can point at it."""
    return key(project_pk(ws_id, project_id), f"{DOC_BODY_PREFIX}{content_sha256}")


def changelog_key(ws_id: str, project_id: str, entry_id: str) -> Key:
    return key(project_pk(ws_id, project_id), f"{CHANGELOG_PREFIX}{entry_id}")


def snapshot_key(ws_id: str, snapshot_id: str) -> Key:
    return key(ws_pk(ws_id), f"{SNAPSHOT_PREFIX}{snapshot_id}")


def project_snapshots_gsi(ws_id: str, project_id: str) -> str:
    """GSI1 partition: one project's snapshots in creation order."""
    return f"{WS}{ws_id}#{PROJECT_PREFIX}{project_id}#SNAPSHOTS"


# @keys:tasks_workflow
TASK_DEPENDENCY_PREFIX = "TASKDEP#"


def task_dependency_key(ws_id: str, blocker_id: str, task_id: str) -> Key:
    """Link item: `task_id` lists `blocker_id` in its blocked_by (written with the task)."""
    return key(ws_pk(ws_id), f"{TASK_DEPENDENCY_PREFIX}{blocker_id}#{task_id}")


def task_dependency_prefix(blocker_id: str) -> str:
    """Sort-key prefix under ws_pk: the tasks waiting on `blocker_id` (unblocked when it is done)."""
    return f"{TASK_DEPENDENCY_PREFIX}{blocker_id}#"


STORY_PREFIX = "STORY#"


def story_key(ws_id: str, story_id: str) -> Key:
    """A story (a group of tasks); listed by `STORY_PREFIX` under ws_pk."""
    return key(ws_pk(ws_id), f"{STORY_PREFIX}{story_id}")


STORY_TASK_PREFIX = "STORYTASK#"


def story_task_key(ws_id: str, story_id: str, task_id: str) -> Key:
    """Link item: the task belongs to the story (written in the task's transaction)."""
    return key(ws_pk(ws_id), f"{STORY_TASK_PREFIX}{story_id}#{task_id}")


def story_task_prefix(story_id: str) -> str:
    """Sort-key prefix under ws_pk: a story's tasks, in task creation order."""
    return f"{STORY_TASK_PREFIX}{story_id}#"


USER_TASK_PREFIX = "USERTASK#"


def user_task_key(ws_id: str, user_task_id: str) -> Key:
    """A task for a human (user task); listed by `USER_TASK_PREFIX` under ws_pk."""
    return key(ws_pk(ws_id), f"{USER_TASK_PREFIX}{user_task_id}")


def agent_todo_pk(ws_id: str, agent: str) -> str:
    """One agent's todo tasks (the task's assignee, else its owner): link items written in each
    task's own transaction while it is todo, read in priority order by `next=true`."""
    return f"{WS}{ws_id}#TODO#{agent}"


def agent_todo_key(ws_id: str, agent: str, priority: str, task_id: str) -> Key:
    """SK `<priority>#<task_id>`: p0 first, then the oldest task within a priority."""
    return key(agent_todo_pk(ws_id, agent), f"{priority}#{task_id}")


def agent_todo_prefix(priority: str) -> str:
    """Sort-key prefix under agent_todo_pk: the agent's todo tasks of one priority."""
    return f"{priority}#"


def task_day_pk(ws_id: str) -> str:
    """A workspace's task counters per UTC day (SK `YYYY-MM-DD`): created, started and done tasks,
    points and hourly figures, moved in each task's own transaction (daily analytics)."""
    return f"{WS}{ws_id}#TASKDAYS"


def task_day_key(ws_id: str, day: str) -> Key:
    return key(task_day_pk(ws_id), day)


def task_totals_key(ws_id: str) -> Key:
    """A workspace's done tasks per UTC month (`done#YYYY-MM`), for running totals of completions."""
    return key(ws_pk(ws_id), "TASKTOTALS")


def task_done_pk(ws_id: str) -> str:
    """A workspace's done tasks by completion time (SK `<completed_at>#<task_id>`): link items kept
    in each task's own transaction, so one day's completions are one key range."""
    return f"{WS}{ws_id}#TASKSDONE"


def task_done_key(ws_id: str, completed_at: str, task_id: str) -> Key:
    return key(task_done_pk(ws_id), f"{completed_at}#{task_id}")


def task_done_day_prefix(day: str) -> str:
    """Sort-key prefix under task_done_pk: the tasks completed on one UTC day (`YYYY-MM-DD`)."""
    return f"{day}T"


# @keys:sprints
SPRINT_PREFIX = "SPRINT#"


def sprint_key(ws_id: str, number: int) -> Key:
    """A sprint, under its workspace; the zero-padded number keeps the partition in sprint order."""
    return key(ws_pk(ws_id), f"{SPRINT_PREFIX}{number:010d}")


SPRINT_STATS_PREFIX = "SPRINTSTATS#"


def sprint_stats_key(ws_id: str, number: int) -> Key:
    """One sprint's task counters (totals, by status, agent, type, priority and completion day),
    moved in each task's own transaction: sprint analytics and velocity read this one item."""
    return key(ws_pk(ws_id), f"{SPRINT_STATS_PREFIX}{number:010d}")


def sprint_counter_key(ws_id: str) -> Key:
    """Per-workspace sprint bookkeeping: the last number handed out and the one active sprint."""
    return key(ws_pk(ws_id), "SPRINTCOUNTER")


def sprint_retro_pk(ws_id: str, number: int) -> str:
    """Partition of one sprint's retrospective comments, in the order they were written."""
    return f"{WS}{ws_id}#SPRINTRETRO#{number}"


def sprint_retro_key(ws_id: str, number: int, comment_id: str) -> Key:
    return key(sprint_retro_pk(ws_id, number), comment_id)


# @keys:audit
def activity_pk(ws_id: str) -> str:
    """Partition of a workspace's activity timeline; sort keys are time-ordered activity ids."""
    return f"{WS}{ws_id}#ACTIVITY"


def activity_key(ws_id: str, activity_id: str) -> Key:
    return key(activity_pk(ws_id), activity_id)


AUDIT_ID_PREFIX = "aud"
ACTIVITY_ID_PREFIX = "act"


# @keys:threads
def thread_key(ws_id: str, thread_id: str) -> Key:
    """A thread's own item; `message_count` on it numbers the thread's messages."""
    return key(ws_pk(ws_id), f"THREAD#{thread_id}")


def thread_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's live threads, sorted by last activity (`{at}#{thread_id}`)."""
    return f"{WS}{ws_id}#THREADS"


def thread_pk(ws_id: str, thread_id: str) -> str:
    """The partition holding one thread's messages and shares."""
    return f"{WS}{ws_id}#THREAD#{thread_id}"


def thread_message_key(ws_id: str, thread_id: str, sequence: int) -> Key:
    """Zero-padded sequence, so a Query returns a thread's messages in the order they were posted."""
    return key(thread_pk(ws_id, thread_id), f"MSG#{sequence:010d}")


def thread_message_prefix() -> str:
    return "MSG#"


def thread_share_key(ws_id: str, thread_id: str, share_id: str) -> Key:
    """A public share of a thread; its secret lives in a `token_key` item of kind 'share'."""
    return key(thread_pk(ws_id, thread_id), f"SHARE#{share_id}")


def thread_share_prefix() -> str:
    return "SHARE#"


def team_message_pk(ws_id: str, channel: str) -> str:
    """One channel's team messages (SK: message id, time-ordered), read newest first."""
    return f"{WS}{ws_id}#MSGS#{channel}"


def team_message_key(ws_id: str, channel: str, message_id: str) -> Key:
    return key(team_message_pk(ws_id, channel), message_id)


def team_message_list_gsi(ws_id: str) -> str:
    """GSI1 partition: every team message of a workspace across channels, by message id."""
    return f"{WS}{ws_id}#MSGS"


# @keys:knowledge
def adr_key(ws_id: str, adr_id: str) -> Key:
    return key(ws_pk(ws_id), f"ADR#{adr_id}")


def adr_counter_key(ws_id: str) -> Key:
    """The last ADR number issued in a workspace, moved by one conditional write per new ADR."""
    return key(ws_pk(ws_id), "COUNTER#ADR")


def adr_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's ADRs by zero-padded number."""
    return f"{WS}{ws_id}#ADRS"


def rule_key(ws_id: str, rule_id: str) -> Key:
    return key(ws_pk(ws_id), f"RULE#{rule_id}")


def rule_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's rules in creation order."""
    return f"{WS}{ws_id}#RULES"


def failure_key(ws_id: str, failure_id: str) -> Key:
    return key(ws_pk(ws_id), f"FAILURE#{failure_id}")


def failure_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's failure records in creation order."""
    return f"{WS}{ws_id}#FAILURES"


# @keys:notifications
NOTIFICATION_PREFIX = "NOTIF#"


def notification_inbox_pk(ws_id: str, user_id: str) -> str:
    """A member's inbox in one workspace: their notifications (SK `NOTIF#<id>`) and unread counter."""
    return f"{WS}{ws_id}#INBOX#{user_id}"


def notification_key(ws_id: str, user_id: str, notification_id: str) -> Key:
    return key(notification_inbox_pk(ws_id, user_id), f"{NOTIFICATION_PREFIX}{notification_id}")


def notification_prefix() -> str:
    """SK prefix of the notifications in an inbox (newest first by id)."""
    return NOTIFICATION_PREFIX


def notification_counter_key(ws_id: str, user_id: str) -> Key:
    """A member's unread count, changed in the same transaction as every create and read: one GetItem."""
    return key(notification_inbox_pk(ws_id, user_id), "UNREAD")


def notification_unread_gsi(ws_id: str, user_id: str) -> str:
    """GSI1 partition (sparse): a member's unread notifications; an item leaves it when read."""
    return f"{WS}{ws_id}#INBOXUNREAD#{user_id}"


# @keys:search
def search_token_pk(ws_id: str, token: str) -> str:
    """One search token's postings in a workspace (SK `<entity>#<id>`), kept by the stream indexer."""
    return f"{WS}{ws_id}#SEARCH#{token}"


def search_posting_key(ws_id: str, token: str, entity: str, item_id: str) -> Key:
    """One item under one token: BatchGet of these intersects the terms of a multi-word query."""
    return key(search_token_pk(ws_id, token), f"{entity}#{item_id}")


def search_entity_prefix(entity: str) -> str:
    """SK prefix of one entity type among a token's postings (results grouped by type)."""
    return f"{entity}#"


# @keys:agents
AGENT_PREFIX = "AGENT#"
# The global stall watch is spread over this many partitions, so heartbeats never pile onto one.
AGENT_WATCH_SHARDS = 16


def agent_key(ws_id: str, name: str) -> Key:
    """An agent of the registry; its name is its id in paths and unique within the workspace."""
    return key(ws_pk(ws_id), f"{AGENT_PREFIX}{name}")


def agent_api_keys_key(ws_id: str) -> Key:
    """A copy of every agent's sealed engine API key, one attribute per agent: the values redaction
    masks, read in the same BatchGetItem as the common env."""
    return key(ws_pk(ws_id), "AGENTKEYS")


def agent_list_gsi(ws_id: str) -> str:
    """GSI1 partition: the agents a plain list shows (finished child agents leave it), by name."""
    return f"{WS}{ws_id}#AGENTS"


def agent_live_gsi(ws_id: str) -> str:
    """GSI2 partition: a workspace's live agents (heartbeating, not stalled, stopped or finished)."""
    return f"{WS}{ws_id}#LIVEAGENTS"


def agent_live_sk(last_seen_at: str, name: str) -> str:
    """Sorted by last heartbeat, so the silent ones are one key range (`<= cutoff`)."""
    return f"{last_seen_at}#{name}"


def agent_watch_shard(ws_id: str, name: str) -> int:
    return zlib.crc32(f"{ws_id}#{name}".encode()) % AGENT_WATCH_SHARDS


def agent_watch_gsi(shard: int) -> str:
    """GSI3 partition (global, one of AGENT_WATCH_SHARDS): live agents of every workspace by last
    heartbeat, read only by the scheduled stall sweep; the sort key names the workspace."""
    return f"AGENTWATCH#{shard:02d}"


def agent_watch_sk(last_seen_at: str, ws_id: str, name: str) -> str:
    return f"{last_seen_at}#{ws_id}#{name}"


def agent_progress_pk(ws_id: str, name: str) -> str:
    """One agent's progress reports (SK: time-ordered report id), read newest first; they expire."""
    return f"{WS}{ws_id}#PROGRESS#{name}"


def agent_progress_key(ws_id: str, name: str, progress_id: str) -> Key:
    return key(agent_progress_pk(ws_id, name), progress_id)


def agent_latest_progress_pk(ws_id: str) -> str:
    """The latest progress report of each agent of a workspace (SK: agent name): one Query."""
    return f"{WS}{ws_id}#LATESTPROGRESS"


def agent_latest_progress_key(ws_id: str, name: str) -> Key:
    return key(agent_latest_progress_pk(ws_id), name)


AGENT_TEMPLATE_PREFIX = "AGENTTPL#"


def agent_template_key(ws_id: str, template_id: str) -> Key:
    return key(ws_pk(ws_id), f"{AGENT_TEMPLATE_PREFIX}{template_id}")


def agent_template_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's live (not deleted) agent templates in creation order."""
    return f"{WS}{ws_id}#AGENTTEMPLATES"


def agent_template_slug_key(ws_id: str, slug: str) -> Key:
    """Guards a template slug unique among a workspace's live templates (a conditional put)."""
    return key(ws_pk(ws_id), f"AGENTTPLSLUG#{slug}")


# @keys:memories
def memory_pk(ws_id: str) -> str:
    """A workspace's agent memories, SK `<agent>#<key>` (agent names and keys hold no '#')."""
    return f"{WS}{ws_id}#MEMORIES"


def memory_sk(agent_name: str, name: str) -> str:
    return f"{agent_name}#{name}"


def memory_key(ws_id: str, agent_name: str, name: str) -> Key:
    """One agent's memory under its key (`name`)."""
    return key(memory_pk(ws_id), memory_sk(agent_name, name))


def memory_agent_prefix(agent_name: str) -> str:
    """SK prefix under memory_pk (and the type and shared indexes): one agent's memories."""
    return f"{agent_name}#"


def memory_id_key(ws_id: str, memory_id: str) -> Key:
    """Pointer from a memory's id to its agent and key, written in the memory's transaction."""
    return key(ws_pk(ws_id), f"MEMORYID#{memory_id}")


def memory_shared_gsi(ws_id: str) -> str:
    """GSI1 partition (sparse): a workspace's shared memories, SK `<agent>#<key>`."""
    return f"{WS}{ws_id}#SHAREDMEMORIES"


def memory_expiry_gsi(ws_id: str) -> str:
    """GSI2 partition (sparse): memories with an expiry, SK `<expires_at>#<agent>#<key>`, so the
    expired ones are one key range (`<= now`)."""
    return f"{WS}{ws_id}#MEMORYEXPIRY"


def memory_expiry_sk(expires_at: str, agent_name: str, name: str) -> str:
    return f"{expires_at}#{agent_name}#{name}"


def memory_type_gsi(ws_id: str, memory_type: str) -> str:
    """GSI3 partition: a workspace's memories of one type, SK `<agent>#<key>`."""
    return f"{WS}{ws_id}#MEMORYTYPE#{memory_type}"


# @keys:queue
QUEUE_JOB_PREFIX = "QJOB#"
# A workspace's queue counters are spread over this many items (by job id), so concurrent claims
# and completions rarely touch the same counter item in one transaction.
QUEUE_COUNTER_SHARDS = 8


def queue_job_key(ws_id: str, job_id: str) -> Key:
    """A queue job; all of a workspace's jobs are `QUEUE_JOB_PREFIX` under ws_pk (newest first by id)."""
    return key(ws_pk(ws_id), f"{QUEUE_JOB_PREFIX}{job_id}")


def queue_job_status_gsi(ws_id: str, status: str) -> str:
    """GSI1 partition: a workspace's jobs in one status (pending, claimed, completed, dead) by id."""
    return f"{WS}{ws_id}#QUEUESTATUS#{status}"


def queue_ready_gsi(ws_id: str, queue_name: str = "default") -> str:
    """GSI2 partition (sparse): the unfinished jobs (pending or claimed) of one of a workspace's
    queues, ordered by `queue_ready_sk`; finished and dead jobs leave it. The default queue keeps
    the partition it had before queues had names."""
    if queue_name == "default":
        return f"{WS}{ws_id}#QUEUEREADY"
    return f"{WS}{ws_id}#QUEUEREADY#{queue_name}"


def queue_ready_sk(priority: int, next_at: str, job_id: str) -> str:
    """Priority descending (10 first), then the time the job can next be handed out (a pending
    job's available_at, a claimed job's claim_expires_at), then id: jobs claimable at `now` in one
    priority are the key range `queue_ready_range(priority, now)`."""
    return f"{queue_priority_prefix(priority)}{next_at}#{job_id}"


def queue_priority_prefix(priority: int) -> str:
    """GSI2 sort-key prefix under queue_ready_gsi: one priority's unfinished jobs (10 sorts first)."""
    return f"P{_two_digits(10 - priority) if isinstance(priority, int) else priority}#"


def _two_digits(number: int | str) -> str:
    return f"{number:02d}" if isinstance(number, int) else str(number)


def queue_ready_range(priority: int, now: str) -> tuple[str, str]:
    """GSI2 sort-key range of one priority's jobs whose next-available time is at or before `now`."""
    prefix = queue_priority_prefix(priority)
    return prefix, f"{prefix}{now}#~"


def queue_counter_key(ws_id: str, shard: int) -> Key:
    """One shard of a workspace's queue counters (jobs per status, open jobs per priority), moved
    in the transaction of every job change; stats add up the shards (one BatchGetItem)."""
    return key(ws_pk(ws_id), f"QUEUECOUNTER#{_two_digits(shard)}")


def queue_counter_shard(job_id: str) -> int:
    return zlib.crc32(job_id.encode()) % QUEUE_COUNTER_SHARDS


def queue_idempotency_key(ws_id: str, idempotency_key: str) -> Key:
    """Guards an idempotency_key unique among a workspace's jobs (a conditional put with the job)."""
    return key(ws_pk(ws_id), f"QJOBKEY#{idempotency_key}")


# @keys:schedules
SCHEDULE_PREFIX = "SCHEDULE#"


def schedule_key(ws_id: str, schedule_id: str) -> Key:
    return key(ws_pk(ws_id), f"{SCHEDULE_PREFIX}{schedule_id}")


def schedule_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's schedules in creation order."""
    return f"{WS}{ws_id}#SCHEDULES"


def schedule_firing_key(ws_id: str, schedule_id: str, scheduled_time: str) -> Key:
    """Marks one firing of a schedule as done (EventBridge Scheduler delivers at least once, and a
    retry carries the same scheduled time); expires with `ttl`."""
    return key(ws_pk(ws_id), f"SCHEDULEFIRED#{schedule_id}#{scheduled_time}")


# @keys:runs
RUN_PREFIX = "RUN#"


def run_key(ws_id: str, run_id: str) -> Key:
    return key(ws_pk(ws_id), f"{RUN_PREFIX}{run_id}")


def run_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's runs in creation order (filters: status, project, agent)."""
    return f"{WS}{ws_id}#RUNS"


def run_project_gsi(ws_id: str, project_id: str) -> str:
    """GSI2 partition: one project's runs in creation order."""
    return f"{WS}{ws_id}#PROJECTRUNS#{project_id}"


def run_counter_key(ws_id: str) -> Key:
    """How many of a workspace's runs are active (queued, running, paused, awaiting approval)."""
    return key(ws_pk(ws_id), "RUNCOUNTER")


def plan_usage_key(ws_id: str) -> Key:
    """How many members and live projects a workspace has, each beside its tier's limit."""
    return key(ws_pk(ws_id), "PLANUSAGE")


def run_review_key(ws_id: str, run_id: str, review_id: str) -> Key:
    return key(ws_pk(ws_id), f"RUNREVIEW#{run_id}#{review_id}")


def run_review_prefix(run_id: str) -> str:
    return f"RUNREVIEW#{run_id}#"


def run_usage_key(ws_id: str, month: str) -> Key:
    """Per-month run counters by outcome (`month` is YYYY-MM), metered when a run is finalized."""
    return key(ws_pk(ws_id), f"USAGE#RUNS#{month}")


def run_events_pk(ws_id: str, run_id: str) -> str:
    """A run's telemetry: items holding batches of events, sorted by the last event id they hold."""
    return f"{WS}{ws_id}#RUNEVENTS#{run_id}"


def run_events_sk(last_event_id: int) -> str:
    # Zero-padded so string order is numeric order.
    return f"{last_event_id:012d}"


def run_events_key(ws_id: str, run_id: str, last_event_id: int) -> Key:
    """One batch of a run's events, keyed by the last event id it holds."""
    return key(run_events_pk(ws_id, run_id), run_events_sk(last_event_id))


# The highest event id a run's event keys can hold (twelve digits).
RUN_EVENTS_MAX_ID = 10**12 - 1
RUN_FILE_PREFIX = "FILE#"
RUN_COMMAND_PREFIX = "CMD#"
RUN_SNAPSHOT_PREFIX = "SNAP#"
RUN_ARTIFACT_PREFIX = "ARTIFACT#"
RUN_INPUT_PREFIX = "INPUT#"


def run_data_pk(ws_id: str, run_id: str) -> str:
    """What a run's telemetry materializes (its changed files, commands, snapshots, artifacts, summary)
    and the questions its agent asked."""
    return f"{WS}{ws_id}#RUNDATA#{run_id}"


def run_file_key(ws_id: str, run_id: str, file_id: str) -> Key:
    """One changed file of a run (`file_id` is a stable hash of its path); the latest diff wins."""
    return key(run_data_pk(ws_id, run_id), f"{RUN_FILE_PREFIX}{file_id}")


def run_command_key(ws_id: str, run_id: str, command_id: str) -> Key:
    return key(run_data_pk(ws_id, run_id), f"{RUN_COMMAND_PREFIX}{command_id}")


def run_snapshot_key(ws_id: str, run_id: str, snapshot_id: str) -> Key:
    return key(run_data_pk(ws_id, run_id), f"{RUN_SNAPSHOT_PREFIX}{snapshot_id}")


def run_artifact_key(ws_id: str, run_id: str, artifact_id: str) -> Key:
    return key(run_data_pk(ws_id, run_id), f"{RUN_ARTIFACT_PREFIX}{artifact_id}")


def run_summary_key(ws_id: str, run_id: str) -> Key:
    return key(run_data_pk(ws_id, run_id), "SUMMARY")


def run_input_key(ws_id: str, run_id: str, request_id: str) -> Key:
    """A question the run's agent asked a person, and its answer (ids sort by when it was asked)."""
    return key(run_data_pk(ws_id, run_id), f"{RUN_INPUT_PREFIX}{request_id}")


def run_command_output_object(ws_id: str, run_id: str, command_id: str, stream: str) -> str:
    """S3 key of a command's stdout or stderr (ArtifactsBucket)."""
    return f"runs/{ws_id}/{run_id}/commands/{command_id}/{stream}"


def run_artifact_object(ws_id: str, run_id: str, artifact_id: str, name: str) -> str:
    """S3 key an artifact is uploaded to (ArtifactsBucket)."""
    return f"runs/{ws_id}/{run_id}/artifacts/{artifact_id}/{name}"


# @keys:deploy
def connection_key(ws_id: str, connection_id: str) -> Key:
    return key(ws_pk(ws_id), f"CONNECTION#{connection_id}")


def connection_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's provider connections in creation order."""
    return f"{WS}{ws_id}#CONNECTIONS"


def capsule_key(ws_id: str, capsule_id: str) -> Key:
    return key(ws_pk(ws_id), f"CAPSULE#{capsule_id}")


def capsule_list_gsi(ws_id: str) -> str:
    """GSI1 partition: a workspace's capsules in creation order."""
    return f"{WS}{ws_id}#CAPSULES"


def deploy_policy_key(ws_id: str) -> Key:
    """The workspace's deploy policy: which providers, and which of their connections, capsules may use."""
    return key(ws_pk(ws_id), "DEPLOYPOLICY")


def deploy_secrets_key(ws_id: str) -> Key:
    """A copy of every secret deploy control holds (connection credentials, sensitive outputs), one
    attribute each, so redaction reads them all with one key (logic.known_secrets)."""
    return key(ws_pk(ws_id), "DEPLOYSECRETS")


def capsule_pk(ws_id: str, capsule_id: str) -> str:
    """A capsule's state versions, one item per serial (SK STATE#<zero-padded serial>)."""
    return f"{WS}{ws_id}#CAPSULE#{capsule_id}"


STATE_VERSION_PREFIX = "STATE#"


def state_version_key(ws_id: str, capsule_id: str, serial: int) -> Key:
    return key(capsule_pk(ws_id, capsule_id), f"{STATE_VERSION_PREFIX}{serial:012d}")


def state_object(ws_id: str, capsule_id: str) -> str:
    """S3 key of a capsule's state (ArtifactsBucket, versioned: each state version is one object version)."""
    return f"deploy/{ws_id}/{capsule_id}/terraform.tfstate"


def plan_object(ws_id: str, capsule_id: str, run_id: str) -> str:
    """S3 key of a plan run's saved plan (ArtifactsBucket)."""
    return f"deploy/{ws_id}/{capsule_id}/plans/{run_id}.tfplan"


# @keys:billing
BILLING_EVENT_PREFIX = "STRIPEEVENT#"
STRIPE_CUSTOMER_PREFIX = "STRIPECUSTOMER#"


def subscription_key(ws_id: str) -> Key:
    """The workspace's subscription: its tier and status as Stripe last told them."""
    return key(ws_pk(ws_id), "SUBSCRIPTION")


def billing_event_key(ws_id: str, event_id: str) -> Key:
    """A Stripe event applied to the workspace (kept a few weeks): each event id is applied once."""
    return key(ws_pk(ws_id), f"{BILLING_EVENT_PREFIX}{event_id}")


def stripe_customer_key(customer_id: str) -> Key:
    """The workspace a Stripe customer pays for: an event naming only the customer finds it here."""
    return key(f"{STRIPE_CUSTOMER_PREFIX}{customer_id}", "CUSTOMER")


def auto_topup_key(ws_id: str) -> Key:
    """The workspace's auto top-up: threshold, package, monthly cap and the top-up in flight."""
    return key(ws_pk(ws_id), "AUTOTOPUP")


def token_balance_key(ws_id: str) -> Key:
    """The workspace's token balance and the sequence number of its latest ledger row."""
    return key(ws_pk(ws_id), "TOKENS")


def token_ledger_pk(ws_id: str) -> str:
    """The workspace's token ledger: one item per balance change, SK the zero-padded sequence."""
    return f"{WS}{ws_id}#TOKENLEDGER"


def token_ledger_key(ws_id: str, sequence: int) -> Key:
    return key(token_ledger_pk(ws_id), f"{sequence:012d}")


# @keys:realtime
REALTIME_CONNECTION_PREFIX = "RTCONN#"
REALTIME_SUBSCRIPTION_PREFIX = "SUB#"
REALTIME_WORKSPACE_CHANNEL = "workspace"


def realtime_connection_pk(connection_id: str) -> str:
    """One WebSocket connection: who holds it (SK CONNECTION) and the channels it listens to (SK SUB#…)."""
    return f"{REALTIME_CONNECTION_PREFIX}{connection_id}"


def realtime_connection_key(connection_id: str) -> Key:
    return key(realtime_connection_pk(connection_id), "CONNECTION")


def realtime_connection_subscription_key(connection_id: str, ws_id: str, channel: str) -> Key:
    """The connection's own record of one subscription, so a disconnect finds them all in one Query."""
    return key(realtime_connection_pk(connection_id), f"{REALTIME_SUBSCRIPTION_PREFIX}{ws_id}#{channel}")


def realtime_run_channel(run_id: str) -> str:
    """Channel of one run's events (as clients name it)."""
    return f"runs/{run_id}"


def realtime_notification_channel(user_id: str) -> str:
    """Channel of one member's notifications: clients say `notifications`, the key names the member."""
    return f"notifications/{user_id}"


def realtime_channel_pk(ws_id: str, channel: str) -> str:
    """The live subscribers of one channel of a workspace (SK: connection id): fan-out is one Query."""
    return f"{WS}{ws_id}#RTCHANNEL#{channel}"


def realtime_subscriber_key(ws_id: str, channel: str, connection_id: str) -> Key:
    return key(realtime_channel_pk(ws_id, channel), connection_id)
