"""The store: one DynamoDB table, reached through a handful of named operations.

Items are plain dicts whose keys come from `agentplane.keys`. Writes that change state take a
condition; a failed condition surfaces as `ConditionFailed` carrying the item as it is now, so the
caller can say why (for example a 409 with `current_status`). Reads on request paths are GetItem,
BatchGetItem or Query, never Scan.

A request can leave a read to be checked before it sees any data (its caller's token and
membership, see `defer_check`): the check's keys go out with the request's first read, in the same
BatchGetItem as a GetItem or beside a Query, so checking costs no round trip of its own.
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from agentplane.entities.base import Entity, bind_table, bump_version
from agentplane.errors import NotFound
from agentplane.keys import GSI1, GSI1PK, GSI1SK, GSI2, GSI2PK, GSI2SK, GSI3, GSI3PK, GSI3SK, PK, SK, Key
from agentplane.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action
else:
    DynamoDBClient = Any

Item = dict[str, Any]
E = TypeVar("E", bound=Entity)
T = TypeVar("T")
# Items a filtered list reads at most per request before it answers a shorter page with a cursor.
LIST_READ_BUDGET = 1000
_FILL_ROUND = 100

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
MAX_BATCH_GET_KEYS = 100
_INDEX_KEYS = {None: (PK, SK), GSI1: (GSI1PK, GSI1SK), GSI2: (GSI2PK, GSI2SK), GSI3: (GSI3PK, GSI3SK)}


class ConditionFailed(Exception):
    """A conditional write lost: `current` is the item as stored now (None if absent)."""

    def __init__(self, current: Item | None, raw: Mapping[str, Any] | None = None) -> None:
        super().__init__("condition failed")
        self.current = current
        self._raw = raw

    def current_as(self, entity: type[E]) -> E | None:
        """The item as stored now, as `entity` (None if absent)."""
        return entity.from_raw_data(dict(self._raw)) if self._raw else None


class TransactionFailed(Exception):
    """A transaction was cancelled; `reasons[i]` is the code for operation i ('None' if it passed).
    Operations given a name when added are found by it: `failed` is the first failed one's name."""

    def __init__(
        self,
        reasons: list[str],
        items: list[Item | None],
        names: Sequence[str | None] = (),
        raw: Sequence[Mapping[str, Any] | None] = (),
    ) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons
        self.items = items
        self._names = list(names)
        self._raw = list(raw)

    def failed_index(self) -> int | None:
        for index, reason in enumerate(self.reasons):
            if reason not in ("None", ""):
                return index
        return None

    @property
    def failed(self) -> str | None:
        """The name of the first operation whose condition failed or that conflicted (None when
        that operation was added without a name, or nothing failed)."""
        index = self.failed_index()
        if index is None or index >= len(self._names):
            return None
        return self._names[index]

    def reason(self, name: str) -> str:
        """Why the operation named `name` was refused ('None' if it was not, or is not here)."""
        if name not in self._names:
            return "None"
        index = self._names.index(name)
        return self.reasons[index] if index < len(self.reasons) else "None"

    def only_conflicts(self) -> bool:
        """Cancelled only because concurrent transactions touched the same items: worth a retry."""
        return set(self.reasons) - {"None", ""} == {"TransactionConflict"}

    def current(self, name: str, entity: type[E]) -> E | None:
        """The item the operation named `name` found, as `entity` (None if absent)."""
        index = self._names.index(name)
        raw = self._raw[index] if index < len(self._raw) else None
        return entity.from_raw_data(dict(raw)) if raw else None


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return sorted(_from_dynamo(v) for v in value)
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def deserialize(raw: Mapping[str, Any] | None) -> Item | None:
    if raw is None:
        return None
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in raw.items()}


@dataclass
class Expr:
    """A condition or filter expression with its placeholders."""

    text: str
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def __and__(self, other: Expr) -> Expr:
        return Expr(f"({self.text}) AND ({other.text})", {**self.names, **other.names}, {**self.values, **other.values})


def not_exists() -> Expr:
    return Expr("attribute_not_exists(#pk)", {"#pk": PK})


def exists() -> Expr:
    return Expr("attribute_exists(#pk)", {"#pk": PK})


def attr_in(attr: str, allowed: Iterable[Any]) -> Expr:
    """`attr` currently holds one of `allowed`: the guard of every state transition."""
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


@dataclass(frozen=True)
class DeferredCheck:
    """Keys to read before the request sees data, and what must hold of them (`verify` raises)."""

    keys: list[Key]
    verify: Callable[[list[Item | None]], None]


_deferred: contextvars.ContextVar[DeferredCheck | None] = contextvars.ContextVar("deferred_check", default=None)
# Runs a deferred check's BatchGetItem while the request's Query is in flight.
_beside = ThreadPoolExecutor(max_workers=4, thread_name_prefix="deferred-check")


def defer_check(check: DeferredCheck | None) -> None:
    """Send `check` with this request's first read (or before its first write)."""
    _deferred.set(check)


def _take_deferred() -> DeferredCheck | None:
    check = _deferred.get()
    if check is not None:
        _deferred.set(None)
    return check


@dataclass
class Page:
    items: list[Item]
    last_key: dict[str, Any] | None


class Transaction:
    """Operations written all-or-nothing with TransactWriteItems (at most 100). An operation can be
    given a name, so a cancelled transaction says which one failed (`TransactionFailed.failed`)."""

    MAX_OPERATIONS = 100

    def __init__(self, store: Store) -> None:
        self._store = store
        self.operations: list[dict[str, Any]] = []
        self.names: list[str | None] = []
        self._saved: list[Entity] = []

    @property
    def size(self) -> int:
        return len(self.operations)

    def _add(self, kind: str, op: dict[str, Any], name: str | None) -> Transaction:
        if name is not None and name in self.names:
            raise ValueError(f"two operations of one transaction are named {name!r}")
        op["TableName"] = self._store.table_name  # an entity's own Meta names the same table
        op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.operations.append({kind: op})
        self.names.append(name)
        return self

    def put(self, item: Item, condition: Expr | None = None, *, name: str | None = None) -> Transaction:
        op: dict[str, Any] = {"TableName": self._store.table_name, "Item": serialize(item)}
        op.update(_expression_args(None, condition))
        return self._add("Put", op, name)

    def update(
        self, key: Key, update: Update, condition: Expr | None = None, *, name: str | None = None
    ) -> Transaction:
        op: dict[str, Any] = {"TableName": self._store.table_name, "Key": serialize(key)}
        op.update(_expression_args(update, condition))
        return self._add("Update", op, name)

    def delete(self, key: Key, condition: Expr | None = None, *, name: str | None = None) -> Transaction:
        op: dict[str, Any] = {"TableName": self._store.table_name, "Key": serialize(key)}
        op.update(_expression_args(None, condition))
        return self._add("Delete", op, name)

    def check(self, key: Key, condition: Expr, *, name: str | None = None) -> Transaction:
        op: dict[str, Any] = {"TableName": self._store.table_name, "Key": serialize(key)}
        op.update(_expression_args(None, condition))
        return self._add("ConditionCheck", op, name)

    # --- entities: keys, index attributes and versions come from the entity ------------------
    def save(self, entity: Entity, condition: Condition | None = None, *, name: str | None = None) -> Transaction:
        """Put the whole item (a versioned entity: only over the version it was read at, or as a
        new item when it has none yet)."""
        entity.stamp()
        self._saved.append(entity)
        return self._add("Put", entity.get_save_kwargs_from_instance(condition=condition), name)

    def create(self, entity: Entity, *, name: str | None = None) -> Transaction:
        """Put a new item; the transaction fails if one exists at its key."""
        return self.save(entity, type(entity).absent(), name=name)

    def change(
        self, entity: Entity, actions: Sequence[Action], condition: Condition | None = None, *, name: str | None = None
    ) -> Transaction:
        """Update an item read before (a versioned entity: only if still at that version, which
        the update then bumps). The item must exist."""
        actions = [*actions, *entity.restamp()]
        self._saved.append(entity)
        guard = type(entity).present() if condition is None else type(entity).present() & condition
        op = entity.get_update_kwargs_from_instance(actions=actions, condition=guard)
        return self._add("Update", op, name)

    def remove(self, entity: Entity, condition: Condition | None = None, *, name: str | None = None) -> Transaction:
        """Delete an item read before (a versioned entity: only if still at that version)."""
        entity.stamp()
        guard = type(entity).present() if condition is None else type(entity).present() & condition
        return self._add("Delete", entity.get_delete_kwargs_from_instance(condition=guard), name)

    def adjust(
        self,
        entity: type[Entity],
        key: Key,
        actions: Sequence[Action],
        condition: Condition | None = None,
        *,
        name: str | None = None,
    ) -> Transaction:
        """Update attributes of an existing item by its key alone, leaving its version as it is:
        bookkeeping such as a counter, not a change a caller made to the item."""
        guard = entity.present() if condition is None else entity.present() & condition
        return self._add("Update", _key_operation(entity, key, guard, actions), name)

    def drop(
        self, entity: type[Entity], key: Key, condition: Condition | None = None, *, name: str | None = None
    ) -> Transaction:
        """Delete an existing item by its key alone (the transaction fails if it is absent)."""
        guard = entity.present() if condition is None else entity.present() & condition
        return self._add("Delete", _key_operation(entity, key, guard), name)

    def tally(
        self,
        entity: type[Entity],
        key: Key,
        actions: Sequence[Action],
        condition: Condition | None = None,
        *,
        name: str | None = None,
    ) -> Transaction:
        """Update bookkeeping attributes by key whether or not the item exists yet: a counter's
        first count creates it (`adjust` without its presence guard)."""
        return self._add("Update", _key_operation(entity, key, condition, actions), name)

    def discard(self, entity: type[Entity], key: Key, *, name: str | None = None) -> Transaction:
        """Delete an item by its key whether or not it is still there (a clean-up of records that
        may already have expired)."""
        return self._add("Delete", _key_operation(entity, key, None), name)

    def require(self, entity: type[Entity], key: Key, condition: Condition, *, name: str | None = None) -> Transaction:
        """Write nothing to `key`, but only commit if `condition` holds of it."""
        op = entity.get_operation_kwargs_from_class(key["PK"], key["SK"], condition=condition)
        return self._add("ConditionCheck", op, name)

    def commit(self) -> None:
        self._store.commit(self)
        for entity in self._saved:
            bump_version(entity)
        self._saved = []


def _key_operation(
    entity: type[Entity], key: Key, condition: Condition | None, actions: Sequence[Action] | None = None
) -> dict[str, Any]:
    # pynamodb builds key-addressed operations only for condition checks; the same builder
    # takes update actions, without the version handling an instance's update adds.
    connection = entity._get_connection()
    return connection.get_operation_kwargs(
        key["PK"], range_key=key["SK"], condition=condition, actions=list(actions) if actions else None
    )


@dataclass(frozen=True)
class QuerySpec:
    """One access pattern's Query: a partition of the table or of an index, optionally narrowed
    by a sort-key prefix or range, with a filter on what it reads."""

    partition: str
    index: str | None = None
    sk_prefix: str | None = None
    sk_between: tuple[str, str] | None = None
    filter: Expr | Condition | None = None
    newest_first: bool = False
    consistent: bool = False


@dataclass
class EntityPage(Generic[T]):
    items: list[T]
    last_key: dict[str, Any] | None


def resume_key(item: Item, index: str | None) -> dict[str, Any]:
    """The key a Query resumes after `item` (the table key, plus the index's own key on an index)."""
    return {attr: item[attr] for attr in {PK, SK, *_INDEX_KEYS[index]}}


def retrying(
    call: Callable[[], T],
    *,
    retry_if: Callable[[Exception], bool],
    attempts: int = 5,
    base_delay: float = 0.005,
    max_delay: float = 0.2,
) -> T:
    """`call()`, again after a failure `retry_if` accepts (a write that lost a race), waiting a
    random time up to an exponentially growing bound (full jitter) so colliding writers spread."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as failure:
            if attempt + 1 >= attempts or not retry_if(failure):
                raise
            # Jitter spreads colliding writers; not a security use of randomness.
            time.sleep(random.uniform(0, min(max_delay, base_delay * 2**attempt)))  # noqa: S311
    raise AssertionError("unreachable")  # pragma: no cover


class Store:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 4}))
        return self._client

    def settle_deferred(self) -> None:
        """Run a check still waiting for a read (before a write, or when the request ends)."""
        check = _take_deferred()
        if check is not None:
            check.verify(self._batch_get(check.keys))

    def get(self, key: Key, consistent: bool = True) -> Item | None:
        if not consistent and _deferred.get() is None:
            response = self.client.get_item(TableName=self.table_name, Key=serialize(key), ConsistentRead=False)
            return deserialize(response.get("Item"))
        return deserialize(self._get_raw([key])[0])

    def get_many(self, keys: Sequence[Key]) -> list[Item | None]:
        """BatchGetItem in one round trip (up to 100 keys); results line up with `keys`."""
        return [deserialize(raw) for raw in self._get_raw(keys, batch=True)]

    def _get_raw(self, keys: Sequence[Key], *, batch: bool = False) -> list[dict[str, Any] | None]:
        """The items at `keys` as DynamoDB sent them, strongly consistent. A check waiting for
        this request's first read rides in the same BatchGetItem (or, past 100 keys, beside it)."""
        check = _take_deferred()
        if check is None:
            if len(keys) == 1 and not batch:
                response = self.client.get_item(TableName=self.table_name, Key=serialize(keys[0]), ConsistentRead=True)
                return [response.get("Item")]
            return self._batch_get_raw(keys)
        if len(keys) + len(check.keys) <= MAX_BATCH_GET_KEYS:
            found = self._batch_get_raw([*keys, *check.keys])
            check.verify([deserialize(raw) for raw in found[len(keys) :]])
            return found[: len(keys)]
        checked = _beside.submit(contextvars.copy_context().run, self._batch_get, check.keys)
        found = self._batch_get_raw(keys)
        check.verify(checked.result())
        return found

    def _batch_get(self, keys: Sequence[Key]) -> list[Item | None]:
        return [deserialize(raw) for raw in self._batch_get_raw(keys)]

    def _batch_get_raw(self, keys: Sequence[Key]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        unique = list({(k["PK"], k["SK"]): k for k in keys}.values())
        found: dict[tuple[str, str], dict[str, Any]] = {}
        request: dict[str, Any] = {self.table_name: {"Keys": [serialize(k) for k in unique], "ConsistentRead": True}}
        while request:
            response = self.client.batch_get_item(RequestItems=request)
            for raw in response.get("Responses", {}).get(self.table_name, []):
                found[(raw[PK]["S"], raw[SK]["S"])] = raw
            request = response.get("UnprocessedKeys") or {}
        return [found.get((k["PK"], k["SK"])) for k in keys]

    def put(self, item: Item, condition: Expr | None = None) -> None:
        self.settle_deferred()
        args = {"TableName": self.table_name, "Item": serialize(item), **_expression_args(None, condition)}
        self._conditional(self.client.put_item, args)

    def update(self, key: Key, update: Update, condition: Expr | None = None) -> Item:
        """UpdateItem returning the item as stored afterwards."""
        self.settle_deferred()
        args = {
            "TableName": self.table_name,
            "Key": serialize(key),
            "ReturnValues": "ALL_NEW",
            **_expression_args(update, condition),
        }
        response = self._conditional(self.client.update_item, args)
        return deserialize(response.get("Attributes")) or {}

    def delete(self, key: Key, condition: Expr | None = None) -> None:
        self.settle_deferred()
        args = {"TableName": self.table_name, "Key": serialize(key), **_expression_args(None, condition)}
        self._conditional(self.client.delete_item, args)

    def query(
        self,
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
    ) -> Page:
        """One Query on a partition of the table or a GSI, bounded by `limit`."""
        spec = QuerySpec(partition, index, sk_prefix, sk_between, filter, newest_first, consistent)
        raw, last = self._query_raw(spec, limit, start_key)
        return Page(items=[deserialize(r) or {} for r in raw], last_key=last)

    def _query_raw(
        self, spec: QuerySpec, limit: int, start_key: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        pk_attr, sk_attr = _INDEX_KEYS[spec.index]
        names = {"#pk": pk_attr}
        values: dict[str, Any] = {":pk": spec.partition}
        condition = "#pk = :pk"
        if spec.sk_prefix is not None:
            names["#sk"] = sk_attr
            values[":skp"] = spec.sk_prefix
            condition += " AND begins_with(#sk, :skp)"
        elif spec.sk_between is not None:
            names["#sk"] = sk_attr
            values[":sklo"], values[":skhi"] = spec.sk_between
            condition += " AND #sk BETWEEN :sklo AND :skhi"
        typed_values = serialize(values)
        args: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "Limit": limit,
            "ScanIndexForward": not spec.newest_first,
        }
        if spec.index:
            args["IndexName"] = spec.index
        elif spec.consistent:
            args["ConsistentRead"] = True
        if isinstance(spec.filter, Expr):
            args["FilterExpression"] = spec.filter.text
            names.update(spec.filter.names)
            typed_values.update(serialize(spec.filter.values))
        elif spec.filter is not None:
            placeholders: dict[str, str] = {}
            args["FilterExpression"] = spec.filter.serialize(placeholders, typed_values)
            names.update({placeholder: attr for attr, placeholder in placeholders.items()})
        args["ExpressionAttributeNames"] = names
        args["ExpressionAttributeValues"] = typed_values
        if start_key:
            args["ExclusiveStartKey"] = serialize(start_key)
        check = _take_deferred()
        checked = (
            _beside.submit(contextvars.copy_context().run, self._batch_get, check.keys) if check is not None else None
        )
        response = self.client.query(**args)
        if check is not None and checked is not None:
            check.verify(checked.result())
        return list(response.get("Items", [])), deserialize(response.get("LastEvaluatedKey"))

    # --- entities ---------------------------------------------------------------------------
    def read(self, entity: type[E], key: Key) -> E | None:
        """The item at `key` as `entity` (strongly consistent), or None."""
        raw = self._get_raw([key])[0]
        return entity.from_raw_data(raw) if raw is not None else None

    def read_or_404(self, entity: type[E], key: Key, missing: str) -> E:
        """The item at `key`, or a 404 problem saying `missing` ("task t_1 not found")."""
        found = self.read(entity, key)
        if found is None:
            raise NotFound(missing)
        return found

    def read_many(self, entity: type[E], keys: Sequence[Key]) -> list[E | None]:
        """BatchGetItem of items of one kind; results line up with `keys`."""
        return [entity.from_raw_data(raw) if raw is not None else None for raw in self._get_raw(keys)]

    def select(
        self, entity: type[E], spec: QuerySpec, *, limit: int, start: dict[str, Any] | None = None
    ) -> EntityPage[E]:
        """One Query of an access pattern, bounded by `limit`."""
        raw, last = self._query_raw(spec, limit, start)
        return EntityPage([entity.from_raw_data(r) for r in raw], last)

    def fill(
        self,
        entity: type[E],
        spec: QuerySpec,
        *,
        limit: int,
        start: dict[str, Any] | None = None,
        budget: int = LIST_READ_BUDGET,
    ) -> EntityPage[E]:
        """Up to `limit` items of an access pattern. Unfiltered, one Query; filtered, Query rounds
        go on until the page is full, the partition ends or `budget` items were read, and the
        cursor resumes right after the last item answered (or the last one read)."""
        if spec.filter is None:
            return self.select(entity, spec, limit=limit, start=start)
        found: list[dict[str, Any]] = []
        last = start
        read = 0
        while read < budget:
            step = min(_FILL_ROUND, budget - read)
            raw, last = self._query_raw(spec, step, last)
            read += step
            found += raw
            if len(found) >= limit:
                if len(found) > limit:
                    found = found[:limit]
                    last = resume_key(deserialize(found[-1]) or {}, spec.index)
                break
            if last is None:
                break
        return EntityPage([entity.from_raw_data(r) for r in found], last)

    def save(self, entity: Entity, condition: Condition | None = None) -> None:
        """PutItem of the whole item (versioned: over the version read, bumping it)."""
        self.settle_deferred()
        entity.stamp()
        args = entity.get_save_kwargs_from_instance(condition=condition)
        self._conditional(self.client.put_item, {**args, "TableName": self.table_name})
        bump_version(entity)

    def create(self, entity: Entity) -> None:
        """PutItem of a new item; ConditionFailed if one exists at its key."""
        self.save(entity, type(entity).absent())

    def change(self, entity: E, actions: Sequence[Action], condition: Condition | None = None) -> E:
        """UpdateItem of an item read before (versioned: only at that version, which it bumps);
        answers the item as stored afterwards."""
        self.settle_deferred()
        actions = [*actions, *entity.restamp()]
        guard = type(entity).present() if condition is None else type(entity).present() & condition
        args = entity.get_update_kwargs_from_instance(actions=actions, condition=guard)
        response = self._conditional(
            self.client.update_item, {**args, "TableName": self.table_name, "ReturnValues": "ALL_NEW"}
        )
        return type(entity).from_raw_data(response["Attributes"])

    def adjust(self, entity: type[E], key: Key, actions: Sequence[Action], condition: Condition | None = None) -> E:
        """UpdateItem of bookkeeping attributes by key (see `Transaction.adjust`); answers the item."""
        self.settle_deferred()
        guard = entity.present() if condition is None else entity.present() & condition
        args = {**_key_operation(entity, key, guard, actions), "TableName": self.table_name, "ReturnValues": "ALL_NEW"}
        response = self._conditional(self.client.update_item, args)
        return entity.from_raw_data(response["Attributes"])

    def tally(self, entity: type[E], key: Key, actions: Sequence[Action], condition: Condition | None = None) -> E:
        """UpdateItem of bookkeeping attributes by key, creating the item if absent (see
        `Transaction.tally`); answers the item."""
        self.settle_deferred()
        args = {
            **_key_operation(entity, key, condition, actions),
            "TableName": self.table_name,
            "ReturnValues": "ALL_NEW",
        }
        response = self._conditional(self.client.update_item, args)
        return entity.from_raw_data(response["Attributes"])

    def remove(self, entity: Entity, condition: Condition | None = None) -> None:
        """DeleteItem of an item read before (versioned: only at that version)."""
        self.settle_deferred()
        entity.stamp()
        guard = type(entity).present() if condition is None else type(entity).present() & condition
        args = entity.get_delete_kwargs_from_instance(condition=guard)
        self._conditional(self.client.delete_item, {**args, "TableName": self.table_name})

    def transaction(self) -> Transaction:
        return Transaction(self)

    def commit(self, tx: Transaction) -> None:
        self.settle_deferred()
        if not tx.operations:
            return
        try:
            self.client.transact_write_items(TransactItems=tx.operations)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons_raw = exc.response.get("CancellationReasons", [])
            reasons = [r.get("Code", "None") for r in reasons_raw]
            items = [deserialize(r.get("Item")) for r in reasons_raw]
            raise TransactionFailed(reasons, items, tx.names, [r.get("Item") for r in reasons_raw]) from exc

    def _conditional(self, call: Any, args: dict[str, Any]) -> Any:
        if "ConditionExpression" in args:
            args["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            return call(**args)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise ConditionFailed(deserialize(exc.response.get("Item")), exc.response.get("Item")) from exc


_store: Store | None = None


def get_store() -> Store:
    """The process-wide store, built on first use so importing a module costs no client."""
    global _store
    if _store is None:
        table_name = get_settings().table_name
        bind_table(table_name)
        _store = Store(table_name)
    return _store


def reset_store() -> None:
    """Forget the cached client (tests and the local stack rebuild it against fresh emulation)."""
    global _store
    _store = None
