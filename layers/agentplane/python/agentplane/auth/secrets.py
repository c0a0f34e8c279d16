"""Bearer secrets and passwords.

Bearer secrets are 256-bit random strings with a readable prefix naming their kind, so leaked
secrets are recognisable and redactable. Only their SHA-256 is stored: they carry full entropy, so
a fast hash is safe for them. Passwords are low-entropy and get argon2id.
"""

from __future__ import annotations

import hashlib
import secrets
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

SECRET_PREFIXES = {
    "session": "aps_",
    "refresh": "apr_",
    "pat": "app_",
    "api_key": "apk_",
    "agent_key": "apa_",
    "invite": "api_",
    "share": "aph_",
    "reset": "apw_",
}


def new_secret(kind: str) -> str:
    return SECRET_PREFIXES[kind] + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_hint(secret: str) -> str:
    """What lists show instead of a secret: its prefix and last four characters."""
    return f"{secret[:4]}…{secret[-4:]}"


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    # Imported lazily: only the auth function pays for argon2 at cold start.
    from argon2 import PasswordHasher

    from agentplane.settings import get_settings

    settings = get_settings()
    # argon2id with the library's defaults (RFC 9106 low-memory profile) unless configured.
    return PasswordHasher(time_cost=settings.password_time_cost, memory_cost=settings.password_memory_kib)


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A real hash to verify against when the account does not exist, so a login for an unknown
# email costs the same time as one with a wrong password.
def dummy_password_hash() -> str:
    return _dummy_hash()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
