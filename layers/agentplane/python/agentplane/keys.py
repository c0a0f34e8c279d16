"""Single-table keys: every prefix and key builder lives here and nowhere else.

Every item that belongs to a workspace carries the workspace id in its partition key, so no query
built from these functions can reach another tenant's items. Access patterns are listed in
docs/access-patterns.md.
"""

from __future__ import annotations

from typing import TypedDict

# Attribute names of the table and its indexes.
PK, SK = "PK", "SK"
GSI1PK, GSI1SK, GSI1 = "GSI1PK", "GSI1SK", "GSI1"
GSI2PK, GSI2SK, GSI2 = "GSI2PK", "GSI2SK", "GSI2"
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
    return key(ws_pk(ws_id), f"TEAMMEMBER#{team_id}#{user_id}")


def team_member_prefix(team_id: str) -> str:
    return f"TEAMMEMBER#{team_id}#"


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


def site_owner_key() -> Key:
    """Claimed once, by the first account ever registered."""
    return key(SITE, "OWNER")


# Each family's keys go below its marker line (keep the marker).
# @keys:api_keys

# @keys:workspaces

# @keys:projects

# @keys:tasks_workflow

# @keys:sprints

# @keys:threads

# @keys:knowledge

# @keys:notifications

# @keys:search

# @keys:agents

# @keys:memories

# @keys:queue

# @keys:schedules

# @keys:runs
