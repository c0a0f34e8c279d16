"""The store: one DynamoDB table, reached through a handful of named operations.

Items are entities (agentplane.entities), each kind declaring its keys and attributes. Writes that
change state take a condition; a failed condition surfaces as `ConditionFailed` carrying the item as
it is now, so the caller can say why (for example a 409 with `current_status`). Reads on request
paths are GetItem, BatchGetItem or Query, never Scan. Code that handles items of any kind as plain
dicts (the workspace export and import, tests) goes through `agentplane.raw_items`.

A request can leave a read to be checked before it sees any data (its caller's token and
membership, see `defer_check`): the check's keys go out with the request's first read, in the same
BatchGetItem as a GetItem or beside a Query, so checking costs no round trip of its own.
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from botocore.exceptions import ClientError

from agentplane import clients
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
Raw = dict[str, Any]  # an item as DynamoDB sends it: {"name": {"S": "value"}, ...}
E = TypeVar("E", bound=Entity)
T = TypeVar("T")
# Items a filtered list reads at most per request before it answers a shorter page with a cursor.
LIST_READ_BUDGET = 1000
_FILL_ROUND = 100

MAX_BATCH_GET_KEYS = 100
_INDEX_KEYS = {None: (PK, SK), GSI1: (GSI1PK, GSI1SK), GSI2: (GSI2PK, GSI2SK), GSI3: (GSI3PK, GSI3SK)}


class ConditionFailed(Exception):
    """A conditional write lost; `current_as` reads the item as stored now."""

    def __init__(self, raw: Mapping[str, Any] | None = None) -> None:
        super().__init__("condition failed")
        self.raw = raw

    def current_as(self, entity: type[E]) -> E | None:
        """The item as stored now, as `entity` (None if absent)."""
        return entity.from_raw_data(dict(self.raw)) if self.raw else None


class TransactionFailed(Exception):
    """A transaction was cancelled; `reasons[i]` is the code for operation i ('None' if it passed).
    Operations given a name when added are found by it: `failed` is the first failed one's name."""

    def __init__(
        self, reasons: list[str], names: Sequence[str | None] = (), raw: Sequence[Mapping[str, Any] | None] = ()
    ) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons
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


def raw_key(key: Key | Mapping[str, str]) -> Raw:
    """A table or index key (every key attribute of the table is a string) as DynamoDB takes it."""
    return {str(name): {"S": value} for name, value in key.items()}


def plain_key(raw: Mapping[str, Any] | None) -> dict[str, str] | None:
    """A key DynamoDB sent (a Query's LastEvaluatedKey) as plain strings, as cursors carry it."""
    return None if raw is None else {name: value["S"] for name, value in raw.items()}


@runtime_checkable
class RawFilter(Protocol):
    """A filter written as DynamoDB's expression text (agentplane.raw_items), not a pynamodb
    condition: its text, attribute names and typed values."""

    def as_filter(self) -> tuple[str, dict[str, str], dict[str, Any]]: ...


@dataclass(frozen=True)
class DeferredCheck:
    """Items to read before the request sees data, each as the kind asked for with its key, and
    what must hold of them (`verify` raises)."""

    wanted: list[tuple[type[Entity], Key]]
    verify: Callable[[list[Entity | None]], None]

    @property
    def keys(self) -> list[Key]:
        return [key for _, key in self.wanted]

    def settle(self, found: Sequence[Raw | None]) -> None:
        pairs = zip(self.wanted, found, strict=True)
        self.verify([entity.from_raw_data(raw) if raw is not None else None for (entity, _), raw in pairs])


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

    def add(self, kind: str, op: dict[str, Any], name: str | None = None) -> Transaction:
        """Add one operation as TransactWriteItems takes it (`Put`, `Update`, `Delete` or
        `ConditionCheck`); entities' operations are built by the methods below."""
        return self._add(kind, op, name)

    def _add(self, kind: str, op: dict[str, Any], name: str | None) -> Transaction:
        if name is not None and name in self.names:
            raise ValueError(f"two operations of one transaction are named {name!r}")
        op["TableName"] = self._store.table_name  # an entity's own Meta names the same table
        op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.operations.append({kind: op})
        self.names.append(name)
        return self

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

    def upsert(
        self,
        entity: type[Entity],
        key: Key,
        actions: Sequence[Action],
        condition: Condition | None = None,
        *,
        name: str | None = None,
    ) -> Transaction:
        """Update attributes of an item by its key, creating it (as `entity`'s kind) when absent:
        counters and bookkeeping items shared by many others, which the first write brings into
        being, and marks that must land even where the item may have expired (a revocation). Its
        version, if any, is left as it is."""
        kind = entity.entity.set(entity)
        return self._add("Update", _key_operation(entity, key, condition, [kind, *actions]), name)

    def discard(self, entity: type[Entity], key: Key, *, name: str | None = None) -> Transaction:
        """Delete an item by its key whether or not it is still there (a clean-up of records that
        may already have expired)."""
        return self._add("Delete", _key_operation(entity, key, None), name)

    def require(self, entity: type[Entity], key: Key, condition: Condition, *, name: str | None = None) -> Transaction:
        """Write nothing to `key`, but only commit if `condition` holds of it."""
        op = entity.get_operation_kwargs_from_class(key["PK"], key["SK"], condition=condition)
        return self._add("ConditionCheck", op, name)

    def parts(self, size: int = MAX_OPERATIONS) -> list[Transaction]:
        """These operations as consecutive transactions of at most `size` each, names kept: for
        work that can outgrow one transaction, where each part is atomic and the whole is not.
        The entities written take their new versions once the last part commits."""
        parts = []
        for start in range(0, len(self.operations), size):
            part = Transaction(self._store)
            part.operations = self.operations[start : start + size]
            part.names = self.names[start : start + size]
            parts.append(part)
        if parts:
            parts[-1]._saved = list(self._saved)
        return parts

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
    filter: Condition | RawFilter | None = None
    newest_first: bool = False
    consistent: bool = False


@dataclass
class EntityPage(Generic[T]):
    items: list[T]
    last_key: dict[str, Any] | None


def resume_key(raw: Mapping[str, Any], index: str | None) -> dict[str, Any]:
    """The key a Query resumes after the item `raw` (the table key, plus the index's own key on an
    index)."""
    return {attr: raw[attr]["S"] for attr in {PK, SK, *_INDEX_KEYS[index]}}


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
        return self._client if self._client is not None else clients.dynamodb()

    def settle_deferred(self) -> None:
        """Run a check still waiting for a read (before a write, or when the request ends)."""
        check = _take_deferred()
        if check is not None:
            check.settle(self._batch_get_raw(check.keys))

    def get_raw(self, keys: Sequence[Key], *, batch: bool = False, consistent: bool = True) -> list[Raw | None]:
        """The items at `keys` as DynamoDB sent them (see `_get_raw`); one key not `batch` is a
        GetItem, eventually consistent if asked and no check waits for a read."""
        if not consistent and not batch and len(keys) == 1 and _deferred.get() is None:
            response = self.client.get_item(TableName=self.table_name, Key=raw_key(keys[0]), ConsistentRead=False)
            return [response.get("Item")]
        return self._get_raw(keys, batch=batch)

    def _get_raw(self, keys: Sequence[Key], *, batch: bool = False) -> list[dict[str, Any] | None]:
        """The items at `keys` as DynamoDB sent them, strongly consistent. A check waiting for
        this request's first read rides in the same BatchGetItem (or, past 100 keys, beside it)."""
        check = _take_deferred()
        if check is None:
            if len(keys) == 1 and not batch:
                response = self.client.get_item(TableName=self.table_name, Key=raw_key(keys[0]), ConsistentRead=True)
                return [response.get("Item")]
            return self._batch_get_raw(keys)
        if len(keys) + len(check.keys) <= MAX_BATCH_GET_KEYS:
            found = self._batch_get_raw([*keys, *check.keys])
            check.settle(found[len(keys) :])
            return found[: len(keys)]
        checked = _beside.submit(contextvars.copy_context().run, self._batch_get_raw, check.keys)
        found = self._batch_get_raw(keys)
        check.settle(checked.result())
        return found

    def _batch_get_raw(self, keys: Sequence[Key]) -> list[dict[str, Any] | None]:
        """The items at `keys`, in BatchGetItems of at most 100 keys each (DynamoDB's limit)."""
        unique = list({(k["PK"], k["SK"]): k for k in keys}.values())
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(unique), MAX_BATCH_GET_KEYS):
            chunk = [raw_key(k) for k in unique[start : start + MAX_BATCH_GET_KEYS]]
            request: dict[str, Any] = {self.table_name: {"Keys": chunk, "ConsistentRead": True}}
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.table_name, []):
                    found[(raw[PK]["S"], raw[SK]["S"])] = raw
                request = response.get("UnprocessedKeys") or {}
        return [found.get((k["PK"], k["SK"])) for k in keys]

    def write_raw(self, operation: str, args: dict[str, Any]) -> dict[str, Any]:
        """One PutItem, UpdateItem or DeleteItem (`operation`: put_item, update_item, delete_item)
        as DynamoDB takes it, after any waiting check; ConditionFailed if its condition fails."""
        self.settle_deferred()
        calls = {
            "put_item": self.client.put_item,
            "update_item": self.client.update_item,
            "delete_item": self.client.delete_item,
        }
        response: dict[str, Any] = self._conditional(calls[operation], {"TableName": self.table_name, **args})
        return response

    def query_raw(
        self, spec: QuerySpec, limit: int, start_key: dict[str, Any] | None
    ) -> tuple[list[Raw], dict[str, Any] | None]:
        """One Query of `spec` (a check waiting for a read rides beside it): the items as DynamoDB
        sent them and the key to resume after."""
        return self._query_raw(spec, limit, start_key)

    def _query_args(self, spec: QuerySpec) -> dict[str, Any]:
        """The Query of `spec` as DynamoDB takes it, without its limit and start."""
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
        typed_values: dict[str, Any] = {name: {"S": value} for name, value in values.items()}
        args: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "ScanIndexForward": not spec.newest_first,
        }
        if spec.index:
            args["IndexName"] = spec.index
        elif spec.consistent:
            args["ConsistentRead"] = True
        if isinstance(spec.filter, RawFilter):
            text, filter_names, filter_values = spec.filter.as_filter()
            args["FilterExpression"] = text
            names.update(filter_names)
            typed_values.update(filter_values)
        elif spec.filter is not None:
            placeholders: dict[str, str] = {}
            args["FilterExpression"] = spec.filter.serialize(placeholders, typed_values)
            names.update({placeholder: attr for attr, placeholder in placeholders.items()})
        args["ExpressionAttributeNames"] = names
        args["ExpressionAttributeValues"] = typed_values
        return args

    def _query_raw(
        self, spec: QuerySpec, limit: int, start_key: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        args = {**self._query_args(spec), "Limit": limit}
        if start_key:
            args["ExclusiveStartKey"] = raw_key(start_key)
        check = _take_deferred()
        checked = (
            _beside.submit(contextvars.copy_context().run, self._batch_get_raw, check.keys)
            if check is not None
            else None
        )
        response = self.client.query(**args)
        if check is not None and checked is not None:
            check.settle(checked.result())
        return list(response.get("Items", [])), plain_key(response.get("LastEvaluatedKey"))

    def count(self, spec: QuerySpec) -> int:
        """How many items `spec` matches (after its filter), counted by DynamoDB (`Select=COUNT`)
        page by page, so nothing but the numbers comes back (a counter's first reckoning, a rare
        report; a partition read through on a hot path would cost what it holds)."""
        self.settle_deferred()
        args: dict[str, Any] = {**self._query_args(spec), "Select": "COUNT"}
        total = 0
        while True:
            response = self.client.query(**args)
            total += int(response.get("Count", 0))
            last = response.get("LastEvaluatedKey")
            if not last:
                return total
            args["ExclusiveStartKey"] = last

    # --- entities ---------------------------------------------------------------------------
    def read(self, entity: type[E], key: Key, *, consistent: bool = True) -> E | None:
        """The item at `key` as `entity` (strongly consistent unless asked otherwise, for reads
        that tolerate a moment's staleness), or None."""
        raw = self.get_raw([key], consistent=consistent)[0]
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

    def read_each(self, wanted: Sequence[tuple[type[Entity], Key]]) -> list[Entity | None]:
        """Items of different kinds in one BatchGetItem, each read as the kind asked for with its
        key (so also an item stored before it carried its kind); results line up with `wanted`."""
        found = self._get_raw([key for _, key in wanted], batch=True)
        pairs = zip(wanted, found, strict=True)
        return [entity.from_raw_data(raw) if raw is not None else None for (entity, _), raw in pairs]

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
                    last = resume_key(found[-1], spec.index)
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

    def upsert(self, entity: type[E], key: Key, actions: Sequence[Action], condition: Condition | None = None) -> E:
        """UpdateItem by key, creating the item as `entity`'s kind when absent (see
        `Transaction.upsert`); answers the item."""
        self.settle_deferred()
        args = _key_operation(entity, key, condition, [entity.entity.set(entity), *actions])
        response = self._conditional(
            self.client.update_item, {**args, "TableName": self.table_name, "ReturnValues": "ALL_NEW"}
        )
        return entity.from_raw_data(response["Attributes"])

    def discard(self, entity: type[Entity], key: Key) -> None:
        """DeleteItem by key whether or not the item is still there (see `Transaction.discard`)."""
        self.settle_deferred()
        self.client.delete_item(**{**_key_operation(entity, key, None), "TableName": self.table_name})

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
            raise TransactionFailed(reasons, tx.names, [r.get("Item") for r in reasons_raw]) from exc

    def _conditional(self, call: Any, args: dict[str, Any]) -> Any:
        if "ConditionExpression" in args:
            args["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            return call(**args)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise ConditionFailed(exc.response.get("Item")) from exc


_store: Store | None = None


def get_store() -> Store:
    """The process-wide store over the configured table; its client is the process's
    (agentplane.clients), so importing a module costs none."""
    global _store
    table_name = get_settings().table_name
    if _store is None or _store.table_name != table_name:
        bind_table(table_name)
        _store = Store(table_name)
    return _store
