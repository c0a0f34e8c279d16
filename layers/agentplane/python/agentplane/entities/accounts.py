"""People's accounts: the profile, what keeps emails, usernames and push tokens unique, and the
person's own collections (sessions, personal access tokens, push devices), which share the user's
partition so one Query lists each of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, Keys, ListDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.auth import User
from agentplane.models.me import Profile
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition

E = TypeVar("E", bound=Entity)
# Items of one of a person's collections read per round when all of them are wanted.
_COLLECTION_ROUND = 100


class UserItem(Entity[Profile], discriminator="user"):
    id = UnicodeAttribute()
    username = UnicodeAttribute()
    email = UnicodeAttribute(null=True)  # null once erased, as every personal field
    password_hash = UnicodeAttribute(null=True)
    display_name = UnicodeAttribute(null=True)
    avatar_url = UnicodeAttribute(null=True)
    bio = UnicodeAttribute(null=True)
    timezone = UnicodeAttribute(null=True)
    locale = UnicodeAttribute(null=True)
    terms_accepted_at = UnicodeAttribute(null=True)
    privacy_accepted_at = UnicodeAttribute(null=True)
    site_owner = BooleanAttribute(null=True)
    password_changed_epoch = number(null=True)
    erased_at = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    internal = frozenset({"password_hash", "password_changed_epoch", "erased_at"})

    def where(self) -> Keys:
        return Keys(keys.user_key(self.id))

    @property
    def erased(self) -> bool:
        return self.erased_at is not None

    def to_user(self) -> User:
        return User.model_validate(self.fields())


class UniqueItem(Entity, discriminator="unique"):
    """Holds a value only one account may have (an email, a username, a push token) for it."""

    claim = UnicodeAttribute(null=True)  # what is unique: email, username, push_token
    value = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute()
    device_id = UnicodeAttribute(null=True)  # push tokens: the device registered with it

    def where(self) -> Keys:
        assert self.claim is not None and self.value is not None
        return Keys(keys.unique_key(self.claim, self.value))

    @classmethod
    def held_by(cls, user_id: str) -> Condition:
        """The claim is still this person's (a release after a transfer must not take it back)."""
        held: Condition = cls.user_id == user_id
        return held


class SiteOwnerItem(Entity, discriminator="site_owner"):
    """Claimed once, by the first account ever registered."""

    user_id = UnicodeAttribute()
    claimed_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.site_owner_key())


class SessionItem(Entity, discriminator="session"):
    """A login: the hashes of its access and refresh token, so logging out reaches both."""

    id = UnicodeAttribute()
    user_id = UnicodeAttribute(null=True)
    token_hashes = ListDocument(default=list)
    created_at = UnicodeAttribute()
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    def where(self) -> Keys:
        assert self.user_id is not None
        return Keys(keys.session_key(self.user_id, self.id))


class PatItem(Entity, discriminator="pat"):
    """A personal access token as its owner's list shows it (the secret's own record is a token)."""

    id = UnicodeAttribute()
    user_id = UnicodeAttribute(null=True)
    name = UnicodeAttribute()
    scopes = ListDocument(null=True)
    origin = UnicodeAttribute(default="personal")  # personal (/me) or device (/auth/token)
    token_hash = UnicodeAttribute()
    expires_at = number(null=True)  # epoch seconds
    created_at = UnicodeAttribute()
    last_used_at = number(null=True)  # epoch seconds, stamped as the token is used
    revoked_at = UnicodeAttribute(null=True)
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    def where(self) -> Keys:
        assert self.user_id is not None
        return Keys(keys.pat_key(self.user_id, self.id))


class DeviceItem(Entity, discriminator="device"):
    """A phone or browser registered for push notifications."""

    id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    platform = UnicodeAttribute()
    name = UnicodeAttribute(default="")
    push_token = UnicodeAttribute()
    push_token_digest = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.device_key(self.user_id, self.id))


def _every(entity: type[E], user_id: str, sk_prefix: str) -> Iterator[E]:
    spec = QuerySpec(keys.user_pk(user_id), sk_prefix=sk_prefix, consistent=True)
    start: dict[str, Any] | None = None
    while True:
        page = get_store().select(entity, spec, limit=_COLLECTION_ROUND, start=start)
        yield from page.items
        if page.last_key is None:
            return
        start = page.last_key


@access_pattern(SessionItem, partition=keys.user_pk, sort="prefix SESSION#")
def sessions_of(user_id: str) -> list[SessionItem]:
    """Every session of a person, strongly consistent (logging out everywhere, a password reset)."""
    return list(_every(SessionItem, user_id, keys.session_prefix()))


@access_pattern(PatItem, partition=keys.user_pk, sort="prefix PAT#")
def pats_of(user_id: str) -> list[PatItem]:
    """Every personal access token of a person, revoked ones included, strongly consistent."""
    return list(_every(PatItem, user_id, keys.pat_prefix()))


@access_pattern(PatItem, partition=keys.user_pk, sort="prefix PAT#, newest first")
def live_pats(user_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[PatItem]:
    """A page of a person's personal access tokens that are not revoked, newest first (one Query)."""
    spec = QuerySpec(
        keys.user_pk(user_id),
        sk_prefix=keys.pat_prefix(),
        newest_first=True,
        filter=PatItem.revoked_at.does_not_exist(),
    )
    return get_store().select(PatItem, spec, limit=limit, start=start)


@access_pattern(DeviceItem, partition=keys.user_pk, sort="prefix DEVICE#")
def devices_of(user_id: str) -> list[DeviceItem]:
    """Every push device a person registered, strongly consistent (erasing the account)."""
    return list(_every(DeviceItem, user_id, keys.device_prefix()))
