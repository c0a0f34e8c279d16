"""Items of any kind as plain dicts: what handles every kind alike rather than one entity.

The workspace export and import copy items whatever they are, and tests and the local stack read
what is stored to check it; request paths use entities (agentplane.store). Items here are dicts
whose keys come from `agentplane.keys`, written with expression text (`Expr`, `Update`). boto3's
type (de)serializer, which such dicts need, is imported on first use only, so no function pays for
it at cold start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from agentplane.entities.base import from_dynamo
from agentplane.keys import PK, Key
from agentplane.store import QuerySpec, Store, Transaction, get_store

if TYPE_CHECKING:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

Item = dict[str, Any]


def _serializer() -> TypeSerializer:
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer()


def _deserializer() -> TypeDeserializer:
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer()


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain item as DynamoDB takes it (None values left out)."""
    serializer = _serializer()
    return {k: serializer.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def deserialize(raw: Mapping[str, Any] | None) -> Item | None:
    """An item DynamoDB sent as plain values (whole numbers as int, sets sorted)."""
    if raw is None:
        return None
    deserializer = _deserializer()
    return {k: from_dynamo(deserializer.deserialize(v)) for k, v in raw.items()}


@dataclass
class Expr:
    """A condition or filter expression with its placeholders."""

    text: str
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def __and__(self, other: Expr) -> Expr:
        return Expr(f"({self.text}) AND ({other.text})", {**self.names, **other.names}, {**self.values, **other.values})

    def as_filter(self) -> tuple[str, dict[str, str], dict[str, Any]]:
        return self.text, self.names, serialize(self.values)


def not_exists() -> Expr:
    return Expr("attribute_not_exists(#pk)", {"#pk": PK})


def exists() -> Expr:
    return Expr("attribute_exists(#pk)", {"#pk": PK})


def attr_in(attr: str, allowed: Iterable[Any]) -> Expr:
    """`attr` currently holds one of `allowed`."""
    values = {f":in_{attr}_{i}": v for i, v in enumerate(allowed)}
    return Expr(f"#in_{attr} IN ({', '.join(values)})", {f"#in_{attr}": attr}, values)


def attr_eq(attr: str, value: Any) -> Expr:
    return Expr(f"#eq_{attr} = :eq_{attr}", {f"#eq_{attr}": attr}, {f":eq_{attr}": value})


@dataclass
class Update:
    """SET/REMOVE/ADD clauses of an UpdateItem, built from plain dicts (`append` adds to the end
    of a list attribute, creating it if absent)."""

    set: Mapping[str, Any] = field(default_factory=dict)
    remove: Sequence[str] = ()
    add: Mapping[str, int | float] = field(default_factory=dict)
    append: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def render(self) -> tuple[str, dict[str, str], dict[str, Any]]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        clauses = []
        sets = []
        for i, (attr, value) in enumerate(self.set.items()):
            if value is None:
                continue
            names[f"#s{i}"] = attr
            values[f":s{i}"] = value
            sets.append(f"#s{i} = :s{i}")
        for i, (attr, tail) in enumerate(self.append.items()):
            names[f"#l{i}"] = attr
            values[f":l{i}"] = list(tail)
            values[":empty_list"] = []
            sets.append(f"#l{i} = list_append(if_not_exists(#l{i}, :empty_list), :l{i})")
        removes = list(self.remove) + [a for a, v in self.set.items() if v is None]
        if sets:
            clauses.append("SET " + ", ".join(sets))
        if removes:
            parts = []
            for i, attr in enumerate(removes):
                names[f"#r{i}"] = attr
                parts.append(f"#r{i}")
            clauses.append("REMOVE " + ", ".join(parts))
        if self.add:
            parts = []
            for i, (attr, delta) in enumerate(self.add.items()):
                names[f"#a{i}"] = attr
                values[f":a{i}"] = delta
                parts.append(f"#a{i} :a{i}")
            clauses.append("ADD " + ", ".join(parts))
        return " ".join(clauses), names, values


def _expression_args(update: Update | None, condition: Expr | None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    if update is not None:
        text, u_names, u_values = update.render()
        args["UpdateExpression"] = text
        names.update(u_names)
        values.update(u_values)
    if condition is not None:
        args["ConditionExpression"] = condition.text
        names.update(condition.names)
        values.update(condition.values)
    if names:
        args["ExpressionAttributeNames"] = names
    if values:
        args["ExpressionAttributeValues"] = serialize(values)
    return args


@dataclass
class Page:
    items: list[Item]
    last_key: dict[str, Any] | None


def _store(store: Store | None) -> Store:
    return store if store is not None else get_store()


def get(key: Key, consistent: bool = True, *, store: Store | None = None) -> Item | None:
    """The item at `key`, or None (one GetItem)."""
    return deserialize(_store(store).get_raw([key], consistent=consistent)[0])


def get_many(keys: Sequence[Key], *, store: Store | None = None) -> list[Item | None]:
    """BatchGetItem in one round trip (up to 100 keys); results line up with `keys`."""
    return [deserialize(raw) for raw in _store(store).get_raw(keys, batch=True)]


def put(item: Item, condition: Expr | None = None, *, store: Store | None = None) -> None:
    _store(store).write_raw("put_item", {"Item": serialize(item), **_expression_args(None, condition)})


def update(key: Key, update: Update, condition: Expr | None = None, *, store: Store | None = None) -> Item:
    """UpdateItem returning the item as stored afterwards."""
    args = {"Key": serialize(key), "ReturnValues": "ALL_NEW", **_expression_args(update, condition)}
    response = _store(store).write_raw("update_item", args)
    return deserialize(response.get("Attributes")) or {}


def delete(key: Key, condition: Expr | None = None, *, store: Store | None = None) -> None:
    _store(store).write_raw("delete_item", {"Key": serialize(key), **_expression_args(None, condition)})


def query(
    partition: str,
    *,
    index: str | None = None,
    sk_prefix: str | None = None,
    sk_between: tuple[str, str] | None = None,
    limit: int = 50,
    start_key: dict[str, Any] | None = None,
    newest_first: bool = False,
    filter: Expr | None = None,
    consistent: bool = False,
    store: Store | None = None,
) -> Page:
    """One Query on a partition of the table or a GSI, bounded by `limit`."""
    spec = QuerySpec(partition, index, sk_prefix, sk_between, filter, newest_first, consistent)
    raw, last = _store(store).query_raw(spec, limit, start_key)
    return Page(items=[deserialize(r) or {} for r in raw], last_key=last)


# --- transaction operations on plain items ---------------------------------------------------
def tx_put(tx: Transaction, item: Item, condition: Expr | None = None, *, name: str | None = None) -> Transaction:
    return tx.add("Put", {"Item": serialize(item), **_expression_args(None, condition)}, name)


def tx_update(
    tx: Transaction, key: Key, update: Update, condition: Expr | None = None, *, name: str | None = None
) -> Transaction:
    return tx.add("Update", {"Key": serialize(key), **_expression_args(update, condition)}, name)


def tx_delete(tx: Transaction, key: Key, condition: Expr | None = None, *, name: str | None = None) -> Transaction:
    return tx.add("Delete", {"Key": serialize(key), **_expression_args(None, condition)}, name)


def tx_check(tx: Transaction, key: Key, condition: Expr, *, name: str | None = None) -> Transaction:
    return tx.add("ConditionCheck", {"Key": serialize(key), **_expression_args(None, condition)}, name)
