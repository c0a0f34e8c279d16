"""The entity base: every item kind of the one table is a pynamodb model derived from `Entity`.

An entity owns what the rest of the code must not hand-keep:
- its keys and index attributes (`where()`, built from `agentplane.keys`, stamped on every write);
- its kind, the `entity` discriminator, so a read of any key comes back as the right class;
- its version (`VersionAttribute`: pynamodb adds `version = n` to every update and save, and
  bumps it) and its expiry (`TTLAttribute`);
- its conversion to the API's pydantic model (`to_model()`), named as the class's type argument:
  `class TeamItem(Entity[Team], discriminator="team")`.

The table's name comes from the settings when the first entity is used (`bind_table`), so
importing an entity module costs no client and no environment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from pydantic import BaseModel
from pynamodb.attributes import (
    Attribute,
    DiscriminatorAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.constants import LIST, MAP
from pynamodb.models import Model
from typing_extensions import TypeVar as DefaultedTypeVar

from agentplane import keys

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

E = TypeVar("E", bound="Entity")
# The API model of an entity; a plain `Entity` (bookkeeping kinds, code handling any kind) has none.
M = DefaultedTypeVar("M", bound=BaseModel, default=BaseModel, covariant=True)


def _plain(value: Any) -> Any:
    """`value` as the exact JSON types pynamodb's raw attributes serialize (they look types up
    exactly: a str enum or a tuple would not be found), numbers as int or float."""
    if value is None or type(value) in (str, int, float, bool, bytes):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return {_plain(v) for v in value}
    if isinstance(value, Decimal):
        return from_dynamo(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def from_dynamo(value: Any) -> Any:
    """A deserialized DynamoDB value as plain JSON types (whole numbers as int, sets sorted)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, set):
        return sorted(from_dynamo(v) for v in value)
    return value


class _Document(Attribute[Any]):
    """A JSON document (a map or a list of plain values), stored as DynamoDB's own map or list.

    pynamodb's raw MapAttribute and ListAttribute serialize undeclared values; read back, their
    numbers are made int where whole, as the API's pydantic models and the items hold them."""

    def serialize(self, value: Any) -> Any:
        return _RAW[self.attr_type].serialize(_plain(value))

    def deserialize(self, value: Any) -> Any:
        return from_dynamo(_RAW[self.attr_type].deserialize(value))


# Kept out of the classes: an attribute held as a class attribute would act as a descriptor.
_RAW: dict[str, Attribute[Any]] = {MAP: MapAttribute(), LIST: ListAttribute()}  # type: ignore[no-untyped-call]


def raw_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain item as DynamoDB holds it, None values left out (for `Entity.from_raw_data`)."""
    return _RAW[MAP].serialize(_plain({k: v for k, v in item.items() if v is not None}))  # type: ignore[no-any-return]


def plain_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An item as DynamoDB sent it (a stream record's image, say) as plain values."""
    return from_dynamo(_RAW[MAP].deserialize(raw))  # type: ignore[no-any-return]


class MapDocument(_Document):
    attr_type = MAP


class ListDocument(_Document):
    attr_type = LIST


class EpochTTL(TTLAttribute):
    """`ttl` in epoch seconds, as the table's TTL setting reads it; set it with an int (the code's
    timestamps are epoch seconds) or a datetime."""

    def __set__(self, instance: Any, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = dt.datetime.fromtimestamp(int(value), tz=dt.UTC)
        super().__set__(instance, value)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Keys:
    """Where an item lives: its table key and, for each index it appears in, that index's key."""

    key: keys.Key
    gsi1: tuple[str, str] | None = None
    gsi2: tuple[str, str] | None = None
    gsi3: tuple[str, str] | None = None


def bump_version(entity: Model) -> None:
    """After a write commits: the entity now holds the version it wrote."""
    entity.update_local_version_attribute()  # type: ignore[no-untyped-call]


class Entity(Model, Generic[M]):
    """One item kind of the table. Subclasses declare `discriminator=` and their attributes, say
    where they live in `where()`, and name their API model as the type argument (`Entity[Team]`)."""

    class Meta:
        table_name = "agentplane"  # replaced by the deployment's table at first use (bind_table)
        region: str | None = None

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)
    entity = DiscriminatorAttribute(attr_name=keys.ENTITY)
    GSI1PK = UnicodeAttribute(null=True)
    GSI1SK = UnicodeAttribute(null=True)
    GSI2PK = UnicodeAttribute(null=True)
    GSI2SK = UnicodeAttribute(null=True)
    GSI3PK = UnicodeAttribute(null=True)
    GSI3SK = UnicodeAttribute(null=True)

    # Attributes that are bookkeeping, never part of the API model (keys are left out anyway).
    internal: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_raw_data(cls: type[E], data: dict[str, Any]) -> E:
        entity = super().from_raw_data(data)
        entity.read_undeclared(data)
        return entity

    def read_undeclared(self, raw: Mapping[str, Any]) -> None:
        """Keep what the stored item holds beyond the declared attributes (nothing, for most kinds:
        pynamodb drops such attributes; counters whose names are data read them here)."""

    def where(self) -> Keys:
        raise NotImplementedError(f"{type(self).__name__} does not say where it lives")

    def derive(self) -> None:
        """Set attributes that follow from others (a lower-cased name to filter on, say); the
        names are listed in `derived` so updates store them too."""

    derived: ClassVar[tuple[str, ...]] = ()

    def stamp(self) -> None:
        """Set the table key, the index attributes and the derived attributes (every write does
        this first)."""
        self.derive()
        where = self.where()
        self.PK, self.SK = where.key["PK"], where.key["SK"]
        for name in ("gsi1", "gsi2", "gsi3"):
            index_key = getattr(where, name)
            pk, sk = (None, None) if index_key is None else index_key
            setattr(self, f"{name.upper()}PK", pk)
            setattr(self, f"{name.upper()}SK", sk)

    def restamp(self) -> list[Action]:
        """`stamp()` an item read before, answering the update actions for every index or derived
        attribute that changed (a task moved to another status moves in its status index)."""
        names = [*_INDEX_ATTRIBUTES, *self.derived]
        before = {name: getattr(self, name) for name in names}
        self.stamp()
        attributes = self.get_attributes()
        actions: list[Action] = []
        for name in names:
            after = getattr(self, name)
            if after != before[name]:
                actions.append(attributes[name].remove() if after is None else attributes[name].set(after))
        return actions

    def assign(self, **changes: Any) -> list[Action]:
        """Set attributes on this item and answer the update actions storing the same (None
        removes the attribute)."""
        attributes = self.get_attributes()
        actions: list[Action] = []
        for name, value in changes.items():
            setattr(self, name, value)
            actions.append(attributes[name].remove() if value is None else attributes[name].set(value))
        return actions

    @classmethod
    def of_kind(cls) -> Condition:
        """The item read is of this kind (a filter for partitions that hold several)."""
        return cls.entity == cls

    @classmethod
    def found(cls: type[E], item: Entity | None) -> E | None:
        """`item` as this kind: what `Store.read_each` answered for a key it was asked as `cls`."""
        if item is not None and not isinstance(item, cls):
            raise TypeError(f"{type(item).__name__} read where {cls.__name__} was asked for")
        return item

    @property
    def key(self) -> keys.Key:
        return keys.key(self.PK, self.SK)

    @classmethod
    def kind(cls) -> str:
        discriminator = cls._get_discriminator_attribute()
        assert discriminator is not None
        return str(discriminator.get_discriminator(cls))

    def fields(self) -> dict[str, Any]:
        """The item's own attributes as plain values: no keys, index attributes or discriminator."""
        hidden = _KEY_ATTRIBUTES | self.internal
        values = {}
        for name in self.get_attributes():
            if name in hidden:
                continue
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        return values

    def as_item(self) -> dict[str, Any]:
        """The item as the table holds it, keys included (for code that still reads plain dicts)."""
        values: dict[str, Any] = {}
        for name, attribute in self.get_attributes().items():
            value = getattr(self, name)
            if value is None:
                continue
            if name == "entity":
                value = self.kind()
            elif isinstance(value, dt.datetime):
                value = int(value.timestamp())
            values[attribute.attr_name] = value
        return values

    @classmethod
    def api_model(cls) -> type[M] | None:
        """The API model `to_model()` answers: the type argument of the class or of the nearest
        base that has one (None for bookkeeping kinds). Found at first use, so importing an entity
        module costs nothing beyond the class itself."""
        if cls not in _API_MODELS:
            _API_MODELS[cls] = _type_argument(cls)
        return cast("type[M] | None", _API_MODELS[cls])

    def to_model(self) -> M:
        """The item as the API shows it: its own attributes, bookkeeping (`internal`) left out."""
        model = self.api_model()
        if model is None:
            raise TypeError(f"{type(self).__name__} has no API model")
        return model.model_validate(self.fields())

    @classmethod
    def absent(cls) -> Condition:
        """The item does not exist yet (a create)."""
        return cls.PK.does_not_exist()

    @classmethod
    def present(cls) -> Condition:
        """The item still exists (an update or delete of something read before)."""
        return cls.PK.exists()


_API_MODELS: dict[type[Entity], type[BaseModel] | None] = {}


def _type_argument(cls: type[Entity]) -> type[BaseModel] | None:
    for klass in cls.__mro__:
        for base in vars(klass).get("__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Entity):
                (model,) = get_args(base)
                return model if isinstance(model, type) and issubclass(model, BaseModel) else None
    return None


_INDEX_ATTRIBUTES = ("GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "GSI3PK", "GSI3SK")
_KEY_ATTRIBUTES = frozenset({"PK", "SK", "entity", *_INDEX_ATTRIBUTES})


def bind_table(table_name: str) -> None:
    """Point every entity at the deployment's table (and drop connections to another one)."""
    Entity.Meta.table_name = table_name
    Entity._connection = None
    for cls in _all_subclasses(Entity):
        if "_connection" in vars(cls):
            cls._connection = None


def _all_subclasses(cls: type[Entity]) -> Iterator[type[Entity]]:
    sub: type[Entity]
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def number(**kwargs: Any) -> NumberAttribute:
    """An integer or decimal attribute (shorthand for the many counters and sizes)."""
    return NumberAttribute(**kwargs)
