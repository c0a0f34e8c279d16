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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from agentplane import clients
from agentplane.keys import GSI1, GSI1PK, GSI1SK, GSI2, GSI2PK, GSI2SK, GSI3, GSI3PK, GSI3SK, PK, SK, Key
from agentplane.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

Item = dict[str, Any]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
MAX_BATCH_GET_KEYS = 100
_INDEX_KEYS = {None: (PK, SK), GSI1: (GSI1PK, GSI1SK), GSI2: (GSI2PK, GSI2SK), GSI3: (GSI3PK, GSI3SK)}


class ConditionFailed(Exception):
    """A conditional write lost: `current` is the item as stored now (None if absent)."""

    def __init__(self, current: Item | None) -> None:
        super().__init__("condition failed")
        self.current = current


class TransactionFailed(Exception):
    """A transaction was cancelled; `reasons[i]` is the code for operation i ('None' if it passed)."""

    def __init__(self, reasons: list[str], items: list[Item | None]) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons
        self.items = items

    def failed_index(self) -> int | None:
        for index, reason in enumerate(self.reasons):
            if reason not in ("None", ""):
                return index
        return None


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
    """Operations written all-or-nothing with TransactWriteItems (at most 100)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.operations: list[dict[str, Any]] = []

    def put(self, item: Item, condition: Expr | None = None) -> Transaction:
        op: dict[str, Any] = {"TableName": self._store.table_name, "Item": serialize(item)}
        op.update(_expression_args(None, condition))
        op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.operations.append({"Put": op})
        return self

    def update(self, key: Key, update: Update, condition: Expr | None = None) -> Transaction:
        op: dict[str, Any] = {"TableName": self._store.table_name, "Key": serialize(key)}
        op.update(_expression_args(update, condition))
        op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.operations.append({"Update": op})
        return self

    def delete(self, key: Key, condition: Expr | None = None) -> Transaction:
        op: dict[str, Any] = {"TableName": self._store.table_name, "Key": serialize(key)}
        op.update(_expression_args(None, condition))
        op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.operations.append({"Delete": op})
        return self

    def check(self, key: Key, condition: Expr) -> Transaction:
        op: dict[str, Any] = {"TableName": self._store.table_name, "Key": serialize(key)}
        op.update(_expression_args(None, condition))
        op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.operations.append({"ConditionCheck": op})
        return self

    def commit(self) -> None:
        self._store.commit(self)


class Store:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        return self._client if self._client is not None else clients.dynamodb()

    def settle_deferred(self) -> None:
        """Run a check still waiting for a read (before a write, or when the request ends)."""
        check = _take_deferred()
        if check is not None:
            check.verify(self._batch_get(check.keys))

    def get(self, key: Key, consistent: bool = True) -> Item | None:
        check = _take_deferred()
        if check is not None:
            found = self._batch_get([key, *check.keys])
            check.verify(found[1:])
            return found[0]
        response = self.client.get_item(TableName=self.table_name, Key=serialize(key), ConsistentRead=consistent)
        return deserialize(response.get("Item"))

    def get_many(self, keys: Sequence[Key]) -> list[Item | None]:
        """BatchGetItem in one round trip (up to 100 keys); results line up with `keys`."""
        check = _take_deferred()
        if check is None:
            return self._batch_get(keys)
        if len(keys) + len(check.keys) <= MAX_BATCH_GET_KEYS:
            found = self._batch_get([*keys, *check.keys])
            check.verify(found[len(keys) :])
            return found[: len(keys)]
        checked = _beside.submit(contextvars.copy_context().run, self._batch_get, check.keys)
        found = self._batch_get(keys)
        check.verify(checked.result())
        return found

    def _batch_get(self, keys: Sequence[Key]) -> list[Item | None]:
        if not keys:
            return []
        unique = list({(k["PK"], k["SK"]): k for k in keys}.values())
        found: dict[tuple[str, str], Item] = {}
        request: dict[str, Any] = {self.table_name: {"Keys": [serialize(k) for k in unique], "ConsistentRead": True}}
        while request:
            response = self.client.batch_get_item(RequestItems=request)
            for raw in response.get("Responses", {}).get(self.table_name, []):
                item = deserialize(raw) or {}
                found[(item[PK], item[SK])] = item
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
        pk_attr, sk_attr = _INDEX_KEYS[index]
        names = {"#pk": pk_attr}
        values: dict[str, Any] = {":pk": partition}
        condition = "#pk = :pk"
        if sk_prefix is not None:
            names["#sk"] = sk_attr
            values[":skp"] = sk_prefix
            condition += " AND begins_with(#sk, :skp)"
        elif sk_between is not None:
            names["#sk"] = sk_attr
            values[":sklo"], values[":skhi"] = sk_between
            condition += " AND #sk BETWEEN :sklo AND :skhi"
        args: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "Limit": limit,
            "ScanIndexForward": not newest_first,
        }
        if index:
            args["IndexName"] = index
        elif consistent:
            args["ConsistentRead"] = True
        if filter is not None:
            args["FilterExpression"] = filter.text
            names.update(filter.names)
            values.update(filter.values)
        args["ExpressionAttributeNames"] = names
        args["ExpressionAttributeValues"] = serialize(values)
        if start_key:
            args["ExclusiveStartKey"] = serialize(start_key)
        check = _take_deferred()
        checked = (
            _beside.submit(contextvars.copy_context().run, self._batch_get, check.keys) if check is not None else None
        )
        response = self.client.query(**args)
        if check is not None and checked is not None:
            check.verify(checked.result())
        items = [deserialize(raw) or {} for raw in response.get("Items", [])]
        return Page(items=items, last_key=deserialize(response.get("LastEvaluatedKey")))

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
            raise TransactionFailed(reasons, items) from exc

    def _conditional(self, call: Any, args: dict[str, Any]) -> Any:
        if "ConditionExpression" in args:
            args["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            return call(**args)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise ConditionFailed(deserialize(exc.response.get("Item"))) from exc


_store: Store | None = None


def get_store() -> Store:
    """The process-wide store over the configured table; its client is the process's
    (agentplane.clients), so importing a module costs none."""
    global _store
    table_name = get_settings().table_name
    if _store is None or _store.table_name != table_name:
        _store = Store(table_name)
    return _store
