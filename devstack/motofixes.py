"""Every change the local stack makes to moto, in one place, each tied to the pinned moto version.

moto emulates one request at a time for tests; the local stack serves a working day from many
threads. Each patch below names what moto does and why the stack cannot live with it. `install()`
refuses to run on another moto version: a moved pin must be re-checked against these, not
silently stop applying them.

- serialized DynamoDB: moto's DynamoDB is not thread-safe; every request (and the stream reads)
  runs under one lock, as DynamoDB applies each write atomically.
- untracked models: `BaseModel.__new__` appends every model instance ever made (every item, query
  result and stream record) to a class-level list cleared only when a mock stops. Never read.
- item-sized transactions: `transact_write_items` deep-copies each named table (its stream
  included) to roll back. Here it keeps a copy of only the items it names and the stream's length.
- page-sized queries: `Table.query` sorts the whole table, then filters it. Here a Query reads the
  partition it names (the table's own items by hash key, or a per-index map kept on every write),
  kept sorted between writes, and of that only the run its key condition, start key and limit
  select, as DynamoDB reads a page.
- bounded streams: moto keeps every stream record and every shard iterator it hands out. Records
  older than DynamoDB's 24 hours, or read by every local consumer, are trimmed; iterators expire
  after 15 minutes as on AWS.
- resumable waits: a state's timeout counts from its entry and a heartbeat's from the last beat,
  and both survive a restart (persist.restart_executions).
- key pairs on first use: moto makes an RSA key pair for every KMS key, symmetric ones too.
- cached ASL validation, executions not yet running: see the functions.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import inspect
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

MOTO_VERSION = "5.2.5"
STREAM_RETENTION = timedelta(hours=24)
ITERATOR_LIFETIME = 15 * 60.0
ITERATORS_KEPT = 1_000

dynamodb_lock = threading.RLock()
"""Held for every DynamoDB request and stream read; re-entrant, so a patch may take it again."""

# Keys (table name, hash, range) written by this thread's current request, for the journal.
WriteListener = Callable[[Any, Any, Any], None]
_write_listeners: list[WriteListener] = []
_partition = threading.local()  # the candidates one Table.query on this thread reads
_APPLIED: set[tuple[type, str, str]] = set()
_plain = threading.local()  # set by plain_moto(), for differential tests


class MotoVersionError(RuntimeError):
    pass


def patch(owner: type, name: str, make: Callable[[Any], Any], wrap_static: bool = False) -> None:
    """Replace owner.name with make(current), once per `make`: patches of one method stack."""
    applied = (owner, name, make.__qualname__)
    if applied in _APPLIED:
        return
    _APPLIED.add(applied)
    current = owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)  # may be inherited
    function = current.__func__ if isinstance(current, staticmethod) else current
    replacement = make(function)
    setattr(owner, name, staticmethod(replacement) if wrap_static else replacement)


@contextlib.contextmanager
def plain_moto() -> Iterator[None]:
    """On this thread, queries and transactions take moto's own path (to compare against)."""
    _plain.on = True
    try:
        yield
    finally:
        _plain.on = False


def _is_plain() -> bool:
    return bool(getattr(_plain, "on", False))


def install() -> None:
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise MotoVersionError(
            f"devstack/motofixes.py is written against moto {MOTO_VERSION}, found {moto.__version__}: "
            "check each patch against the new version, then move MOTO_VERSION"
        )
    _untracked_models()
    _write_hooks()
    _item_sized_transactions()
    _page_sized_queries()
    _bounded_streams()
    _serialized_dynamodb()  # last, so the lock is taken outside every other patch
    _cached_asl_validation()
    _skip_executions_not_yet_running()
    _resumable_waits()
    _started_executions_noted()
    _key_pairs_on_first_use()


# ---------------------------------------------------------------- locking and tracking


def _untracked_models() -> None:
    from moto.core.common_models import BaseModel

    def untracked(_: Any) -> Any:
        return lambda cls, *args, **kwargs: object.__new__(cls)

    patch(BaseModel, "__new__", untracked, wrap_static=True)


def _locked(function: Any) -> Any:
    def locked(*args: Any, **kwargs: Any) -> Any:
        with dynamodb_lock:
            return function(*args, **kwargs)

    return locked


_DYNAMODB_DATA_PLANE = (
    "get_item", "batch_get_item", "put_item", "update_item", "delete_item", "batch_write_item",
    "transact_write_items", "transact_get_items", "query", "scan",
)  # fmt: skip


def _serialized_dynamodb() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    # The whole request, not only the backend call: moto builds the response from live items.
    patch(DynamoHandler, "call_action", _locked)
    patch(DynamoDBStreamsHandler, "call_action", _locked)  # a trim must not move records under a read
    for name in _DYNAMODB_DATA_PLANE:
        patch(DynamoDBBackend, name, _locked)


# ---------------------------------------------------------------- writes: counters, indexes, listeners


def on_write(listener: WriteListener) -> None:
    """Call listener(table, hash_key, range_key) after every change to an item, under the lock."""
    if listener not in _write_listeners:
        _write_listeners.append(listener)


def remove_write_listener(listener: WriteListener) -> None:
    if listener in _write_listeners:
        _write_listeners.remove(listener)


def write_count(table: Any) -> int:
    """How many item changes the table has seen since it was made (a cheap sign of change)."""
    return int(table.__dict__.get("_writes", 0))


def table(name: str) -> Any:
    """moto's table of that name in the stack's account and region, or None."""
    from moto.dynamodb.models import dynamodb_backends

    from devstack import aws

    return dynamodb_backends[aws.ACCOUNT][aws.REGION].tables.get(name)


def item_key(table: Any, hash_key: Any, range_key: Any) -> dict[str, Any]:
    """An item's key as DynamoDB JSON, as the API takes it."""
    key = {table.hash_key_attr: hash_key.to_json()}
    if table.range_key_attr:
        key[table.range_key_attr] = range_key.to_json()
    return key


def read_items(table_name: str, pick: Callable[[Any, Any], Any], chunk: int = 500) -> list[Any]:
    """pick(table, item) for every item of a table, leaving out None, read from moto's items a
    chunk of partitions at a time under the lock: a pass over a large table does not hold up
    requests for its whole length, as a Scan through the API would (and ~20x faster)."""
    found = table(table_name)
    if found is None:
        return []
    with dynamodb_lock:
        partitions = list(found.items)
    picked = []
    for start in range(0, len(partitions), chunk):
        with dynamodb_lock:
            for hash_key in partitions[start : start + chunk]:
                partition = found.items.get(hash_key)
                if partition is None:
                    continue
                for item in partition.values() if found.range_key_attr else [partition]:
                    value = pick(found, item)
                    if value is not None:
                        picked.append(value)
    return picked


def current_item(table: Any, hash_key: Any, range_key: Any) -> Any:
    partition = table.items.get(hash_key)
    if partition is None:
        return None
    return partition.get(range_key) if table.range_key_attr else partition


def _drop_if_empty(table: Any, hash_key: Any) -> None:
    """Table.items is a defaultdict: a lookup or the last delete can leave an empty partition."""
    if table.range_key_attr and not table.items.get(hash_key, True):
        table.items.pop(hash_key, None)


def _written(table: Any, hash_key: Any, range_key: Any) -> None:
    table._writes = write_count(table) + 1
    _drop_if_empty(table, hash_key)
    _sorted_partitions(table).pop((None, hash_key), None)
    _reindex(table, hash_key, range_key)
    for listener in list(_write_listeners):
        listener(table, hash_key, range_key)


def _write_hooks() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    def put_item(put: Any) -> Any:
        def hooked(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            item = put(self, item_attrs, *args, **kwargs)
            _written(self, item.hash_key, item.range_key)
            return item

        return hooked

    def delete_item(delete: Any) -> Any:
        def hooked(self: Any, hash_key: Any, range_key: Any) -> Any:
            try:
                return delete(self, hash_key, range_key)
            finally:
                _written(self, hash_key, range_key)

        return hooked

    def get_item(get: Any) -> Any:
        def hooked(self: Any, hash_key: Any, range_key: Any = None, *args: Any, **kwargs: Any) -> Any:
            try:
                return get(self, hash_key, range_key, *args, **kwargs)
            finally:
                _drop_if_empty(self, hash_key)

        return hooked

    def update_item(update: Any) -> Any:
        # moto changes the item in place, so the write is noted whether or not the update finished.
        def hooked(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            table = self.get_table(table_name)
            try:
                return update(self, table_name, key, *args, **kwargs)
            finally:
                with contextlib.suppress(Exception):  # a key moto refused: nothing was touched
                    _written(table, *self.get_keys_value(table, key))

        return hooked

    patch(Table, "put_item", put_item)
    patch(Table, "delete_item", delete_item)
    patch(Table, "get_item", get_item)
    patch(DynamoDBBackend, "update_item", update_item)


# ---------------------------------------------------------------- transactions


def _item_sized_transactions() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    patch(DynamoDBBackend, "transact_write_items", _transact_write_items)


def _transact_write_items(plain: Any) -> Any:
    """moto 5.2.5's transact_write_items, with a rollback that restores only the named items."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        if _is_plain():
            return plain(self, transact_items)  # type: ignore[no-any-return]
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        before: list[tuple[Any, Any, Any, Any]] = []  # (table, hash, range, item copy or None)
        stream_ends: dict[str, int] = {}
        target_items: set[tuple[str, str]] = set()

        def check_unicity(table_name: str, key: dict[str, Any]) -> None:
            item = (str(table_name), str(dict(sorted(key.items()))))
            if item in target_items:
                raise MultipleTransactionsException()
            target_items.add(item)

        def remember(table: Any, key: dict[str, Any]) -> None:
            if table.name not in stream_ends and table.stream_shard is not None:
                shard = table.stream_shard
                stream_ends[table.name] = shard.starting_sequence_number + len(shard.items)
            hash_key, range_key = self.get_keys_value(table, key)
            item = current_item(table, hash_key, range_key)
            before.append((table, hash_key, range_key, copy.deepcopy(item)))

        def roll_back() -> None:
            for table, hash_key, range_key, item in reversed(before):
                if item is None:
                    if table.range_key_attr:
                        table.items.get(hash_key, {}).pop(range_key, None)
                    else:
                        table.items.pop(hash_key, None)
                elif table.range_key_attr:
                    table.items[hash_key][range_key] = item
                else:
                    table.items[hash_key] = item
                _written(table, hash_key, range_key)
            for name, end in stream_ends.items():
                shard = self.tables[name].stream_shard
                del shard.items[max(0, end - shard.starting_sequence_number) :]

        errors: list[tuple[str, str, dict[str, Any]] | tuple[None, None, None]] = []
        for item in transact_items:
            original_item: dict[str, Any] | None = None
            if len(list(item.keys())) > 1:
                raise TransactWriteSingleOpException
            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                condition_expression = op.get("ConditionExpression")
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                return_on_failure = op.get("ReturnValuesOnConditionCheckFailure")
                if op_type == "Put":
                    attrs = op["Item"]
                    table = self.get_table(table_name)
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                check_unicity(table_name, key)
                current = self.get_item(table_name, key)
                if condition_expression is not None:
                    condition_op = get_filter_expression(condition_expression, names, values)
                    if not condition_op.expr(current):
                        if return_on_failure == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)
                if op_type != "ConditionCheck":
                    remember(self.get_table(table_name), key)
                conditions = {
                    "condition_expression": condition_expression,
                    "expression_attribute_names": names,
                    "expression_attribute_values": values,
                }
                if op_type == "Put":
                    self.put_item(table_name, op["Item"], **conditions)
                elif op_type == "Delete":
                    self.delete_item(table_name, key, **conditions)
                elif op_type == "Update":
                    self.update_item(table_name, key, update_expression=op["UpdateExpression"], **conditions)
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                roll_back()
                raise
            except ConditionalCheckFailed as e:
                errors.append(("ConditionalCheckFailed", str(e.message), original_item))  # type: ignore[arg-type]
            except Exception as e:  # moto reports every other failure per item
                errors.append((type(e).__name__, str(e), original_item))  # type: ignore[arg-type]
        if any(code is not None for code, _, _ in errors):
            roll_back()
            raise TransactionCanceledException(errors)
        return None

    return transact_write_items


# ---------------------------------------------------------------- queries


class _IndexMap:
    """One global secondary index as DynamoDB keeps it: index hash key → the items' table keys."""

    def __init__(self, table: Any, index: Any) -> None:
        self.name = index.name
        self.hash_attr = next(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
        self.partitions: dict[Any, set[tuple[Any, Any]]] = {}
        self.placed: dict[tuple[Any, Any], Any] = {}
        for partition in list(table.items.values()):
            for item in partition.values() if table.range_key_attr else [partition]:
                self.place(table, item.hash_key, item.range_key)

    def place(self, table: Any, hash_key: Any, range_key: Any) -> None:
        key = (hash_key, range_key)
        previous = self.placed.pop(key, None)
        sorted_partitions = _sorted_partitions(table)
        if previous is not None:
            sorted_partitions.pop((self.name, previous), None)
            members = self.partitions[previous]
            members.discard(key)
            if not members:
                del self.partitions[previous]
        item = current_item(table, hash_key, range_key)
        value = item.attrs.get(self.hash_attr) if item is not None else None
        if value is not None:
            sorted_partitions.pop((self.name, value), None)
            self.placed[key] = value
            self.partitions.setdefault(value, set()).add(key)


def _index_maps(table: Any) -> dict[str, _IndexMap]:
    maps = table.__dict__.get("_index_maps")
    if maps is None:
        maps = {index.name: _IndexMap(table, index) for index in table.global_indexes or []}
        table._index_maps = maps
    return maps  # type: ignore[no-any-return]


def _reindex(table: Any, hash_key: Any, range_key: Any) -> None:
    for index_map in table.__dict__.get("_index_maps", {}).values():
        index_map.place(table, hash_key, range_key)


def _partition_items(table: Any, hash_key: Any, index_name: str | None, hash_conditions: Any) -> tuple[Any, Any]:
    """(the partition's key, its items) for one Query, or (None, None) when moto must decide."""
    if not table.range_key_attr:
        return None, None
    if not index_name:
        if hash_key is None:
            return None, None
        return hash_key, list((table.items.get(hash_key) or {}).values())
    index_map = _index_maps(table).get(index_name)
    if index_map is None:
        return None, None  # a local secondary index: rare here, left to moto
    wanted = dict(hash_conditions or []).get(index_map.hash_attr, hash_key)
    if wanted is None:
        return None, None
    return wanted, [current_item(table, h, r) for h, r in index_map.partitions.get(wanted, ())]


class _Unsortable(Exception):
    pass


def _native(value: Any) -> Any:
    if value is None:
        raise _Unsortable
    if value.type == "S":
        return value.value
    if value.type == "N":
        return Decimal(value.value)
    raise _Unsortable  # binary keys: left to moto


@dataclass
class _SortedPartition:
    """One partition in the order moto sorts a Query's results (Table._generate_attr_to_sort_by)."""

    items: list[Any]
    keys: list[tuple[Any, ...]]  # each item's full sort key, natively comparable; [1] is its range


def _sort_attributes(table: Any, index_name: str | None) -> list[str] | None:
    if not index_name:
        return [table.hash_key_attr, table.range_key_attr]
    index = next(i for i in table.global_indexes if i.name == index_name)
    hashes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    ranges = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
    if len(hashes) != 1 or len(ranges) > 1:
        return None  # multi-attribute keys: left to moto
    return [*hashes, *(ranges or [table.range_key_attr]), table.hash_key_attr, table.range_key_attr]


def _sorted_partitions(table: Any) -> dict[tuple[str | None, Any], _SortedPartition]:
    cache = table.__dict__.get("_sorted")
    if cache is None:
        cache = table._sorted = {}
    return cache  # type: ignore[no-any-return]


def _sorted_partition(
    table: Any, index_name: str | None, partition: Any, items: list[Any], attributes: list[str]
) -> _SortedPartition:
    cache = _sorted_partitions(table)
    found = cache.get((index_name, partition))
    if found is None:
        # An index holds only the items that have its range key, as moto's own pass does.
        keyed = [(tuple(_native(i.attrs.get(a)) for a in attributes), i) for i in items if i.attrs.get(attributes[1])]
        keyed.sort(key=lambda pair: pair[0])
        found = cache[(index_name, partition)] = _SortedPartition([i for _, i in keyed], [k for k, _ in keyed])
    return found


def _first(count: int, past: Callable[[int], bool]) -> int:
    """The first position in 0..count where `past` holds (it holds from there on)."""
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if past(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _run_bounds(keys: list[tuple[Any, ...]], comparison: str | None, values: list[Any]) -> tuple[int, int] | None:
    """The positions [start, end) whose range attribute matches the key condition: in sorted order
    every condition DynamoDB allows on a sort key matches one contiguous run."""
    n = len(keys)
    if comparison is None:
        return 0, n
    v = [_native(value) for value in values]

    def at(i: int) -> Any:
        return keys[i][1]

    if comparison == "BEGINS_WITH":
        if not isinstance(v[0], str):
            return None
        prefix = v[0]
        return (
            _first(n, lambda i: at(i) >= prefix),
            _first(n, lambda i: at(i) > prefix and not at(i).startswith(prefix)),
        )
    bounds: dict[str, tuple[Callable[[int], bool], Callable[[int], bool]]] = {
        "EQ": (lambda i: at(i) >= v[0], lambda i: at(i) > v[0]),
        "LT": (lambda i: True, lambda i: at(i) >= v[0]),
        "LE": (lambda i: True, lambda i: at(i) > v[0]),
        "GT": (lambda i: at(i) > v[0], lambda i: False),
        "GE": (lambda i: at(i) >= v[0], lambda i: False),
        "BETWEEN": (lambda i: at(i) >= v[0], lambda i: at(i) > v[-1]),
    }
    comparison = {"=": "EQ", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE"}.get(comparison, comparison)
    if comparison not in bounds:
        return None
    reached, beyond = bounds[comparison]
    return _first(n, reached), _first(n, beyond)


def _candidates(table: Any, hash_key: Any, index_name: str | None, query: dict[str, Any]) -> list[Any] | None:
    """The items one Query can return: its partition, and of that, when the query allows, only the
    run its key condition, start key and limit select (what DynamoDB reads). None: moto decides."""
    partition, items = _partition_items(table, hash_key, index_name, query.get("hash_key_conditions"))
    if items is None:
        return None
    conditions = query.get("range_key_conditions") or []
    if query.get("filter_kwargs") or len(conditions) > 1:
        return items  # legacy filters or multi-attribute sort keys: the whole partition
    attributes = _sort_attributes(table, index_name)
    if attributes is None or (conditions and conditions[0][0] != attributes[1]):
        return items
    try:
        ordered = _sorted_partition(table, index_name, partition, items, attributes)
        run = _run_bounds(ordered.keys, query.get("range_comparison"), query.get("range_objs") or [])
        if run is None:
            return items
        start, end = run
        after = query.get("exclusive_start_key")
        forward = query.get("scan_index_forward", True) is not False
        if after:
            from moto.dynamodb.models.dynamo_type import DynamoType

            mark = tuple(_native(DynamoType(after[a]) if a in after else None) for a in attributes)
            if forward:
                start = max(start, bisect.bisect_right(ordered.keys, mark))
            else:
                end = min(end, bisect.bisect_left(ordered.keys, mark))
    except _Unsortable:
        return items
    # moto hands out a next page when the limit is reached before the partition ends, even if no
    # item after the run matches: the item next to the run keeps that answer.
    if forward:
        end = min(len(ordered.items), end + 1)
    else:
        start = max(0, start - 1)
    limit = query.get("limit")
    if limit:  # one more than asked, so moto knows there is a next page
        if forward:
            end = min(end, start + limit + 1)
        else:
            start = max(start, end - limit - 1)
    return ordered.items[start : max(start, end)]


def _page_sized_queries() -> None:
    from moto.dynamodb.models.table import Table

    def query(plain: Any) -> Any:
        signature = inspect.signature(plain)

        def partitioned(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
            if _is_plain():
                return plain(self, hash_key, *args, **kwargs)
            named = signature.bind(self, hash_key, *args, **kwargs).arguments
            candidates = _candidates(self, hash_key, named.get("index_name"), named)
            if candidates is None:
                return plain(self, hash_key, *args, **kwargs)
            _partition.scope = (self, candidates)
            try:
                return plain(self, hash_key, *args, **kwargs)
            finally:
                _partition.scope = None

        return partitioned

    def all_items(every: Any) -> Any:
        def scoped(self: Any) -> Any:
            scope = getattr(_partition, "scope", None)
            if scope is not None and scope[0] is self:
                return scope[1]
            return every(self)

        return scoped

    patch(Table, "query", query)
    patch(Table, "all_items", all_items)


# ---------------------------------------------------------------- streams


class _ExpiringIterators(OrderedDict[str, Any]):
    """moto's shard-iterator registry, forgetting iterators as DynamoDB does (15 minutes)."""

    def __setitem__(self, key: str, value: Any) -> None:
        value._made = time.monotonic()
        super().__setitem__(key, value)
        horizon = time.monotonic() - ITERATOR_LIFETIME
        while self and (len(self) > ITERATORS_KEPT or next(iter(self.values()))._made < horizon):
            self.popitem(last=False)


def iterator_position(iterator_arn: str) -> int | None:
    """The sequence number a shard iterator reads from next, if moto still knows it."""
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    from devstack import aws

    iterator = dynamodbstreams_backends[aws.ACCOUNT][aws.REGION].shard_iterators.get(iterator_arn)
    return int(iterator.sequence_number) if iterator is not None else None


def trim_stream(table: Any, before_sequence: int | None = None) -> int:
    """Drop stream records before `before_sequence` (read by every consumer) and those past
    DynamoDB's retention; the number dropped."""
    shard = table.stream_shard
    if shard is None:
        return 0
    with dynamodb_lock:
        drop = 0
        if before_sequence is not None:
            drop = max(0, min(len(shard.items), before_sequence - shard.starting_sequence_number))
        horizon = _retention_horizon()
        while drop < len(shard.items) and shard.items[drop].record["dynamodb"]["ApproximateCreationDateTime"] < horizon:
            drop += 1
        if drop:
            del shard.items[:drop]
            shard.starting_sequence_number += drop
        return drop


def _bounded_streams() -> None:
    from moto.dynamodb.models.table import StreamShard
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    def backend_init(init: Any) -> Any:
        def bounded(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            self.shard_iterators = _ExpiringIterators()

        return bounded

    def add(plain: Any) -> Any:
        def retained(self: Any, old: Any, new: Any) -> None:
            plain(self, old, new)
            first = self.items[0] if self.items else None
            if first is not None and first.record["dynamodb"]["ApproximateCreationDateTime"] < _retention_horizon():
                trim_stream(self.table)

        return retained

    def get(plain: Any) -> Any:
        def from_horizon(self: Any, start: int, quantity: int) -> Any:
            # An iterator older than the trim reads from the oldest record kept (AWS: TrimmedDataAccess).
            return plain(self, max(start, self.starting_sequence_number), quantity)

        return from_horizon

    patch(DynamoDBStreamsBackend, "__init__", backend_init)
    patch(StreamShard, "add", add)
    patch(StreamShard, "get", get)
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    for account in list(dynamodbstreams_backends.values()):  # backends made before the patch
        for backend in list(account.values()):
            if not isinstance(backend.shard_iterators, _ExpiringIterators):
                backend.shard_iterators = _ExpiringIterators(backend.shard_iterators)


def _retention_horizon() -> Any:
    from moto.core.utils import utcnow

    return utcnow() - STREAM_RETENTION


# ---------------------------------------------------------------- Step Functions


def _cached_asl_validation() -> None:
    """Parsing an ASL definition costs moto ~0.6 s; the same definition validates the same way."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def cached(validate: Any) -> Any:
        valid: set[str] = set()

        def validate_once(definition: str) -> None:
            if definition not in valid:
                validate(definition=definition)
                valid.add(definition)

        return validate_once

    patch(StepFunctionsParserBackend, "_validate_definition", cached, wrap_static=True)


def _skip_executions_not_yet_running() -> None:
    """moto starts an execution's worker thread, and only that thread builds its environment: a
    SendTaskSuccess/Failure/Heartbeat in between found `exec_worker.env` None and failed with an
    AttributeError (a 500 locally). No task token can belong to such an execution yet, so the
    token lookups skip it, as Step Functions would answer for a token it does not know."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def started(executions: Any) -> Any:
        def started_executions(self: Any, execution_status: Any = None) -> list[Any]:
            found = executions(self, execution_status)
            return [e for e in found if e.exec_worker is not None and e.exec_worker.env is not None]

        return started_executions

    patch(StepFunctionsParserBackend, "_get_executions", started)


# ---------------------------------------------------------------- waits that outlive the stack
#
# A restart starts each running execution again from its input (persist.restart_executions); the
# states it already left resolve at once from the table. Without these patches the state it was
# waiting in would start its timers over, so a silent agent is reported stalled late by the
# downtime. Each execution's current state is kept with the wall-clock time it was entered (this
# attempt: a Retry starts the timers over, as on AWS) and its last heartbeat; a state's timeout
# counts from its entry and each heartbeat interval from the last beat, and a restarted execution
# re-enters its saved state with the saved times.

# One wait per execution: the template's machines have no Parallel or Map states.
_waits: dict[str, dict[str, Any]] = {}  # execution ARN -> {"state", "entered_at", "last_beat"}
_resumed: dict[tuple[str, str], dict[str, Any]] = {}  # (state machine ARN, execution name) -> saved wait
_waits_lock = threading.Lock()
_waits_changes = 0


def execution_wait(execution_arn: str) -> dict[str, Any] | None:
    """The state a running execution is in, when it entered it and its last heartbeat (epoch s)."""
    with _waits_lock:
        wait = _waits.get(execution_arn)
        return dict(wait) if wait else None


def resume_wait(state_machine_arn: str, execution_name: str, wait: dict[str, Any] | None) -> None:
    """Before restarting an execution: its first entry into `wait["state"]` keeps the saved times."""
    if wait:
        with _waits_lock:
            _resumed[(state_machine_arn, execution_name)] = dict(wait)


_execution_listeners: list[Callable[[], None]] = []


def on_execution_started(listener: Callable[[], None]) -> None:
    """Call `listener` in each StartExecution, once the execution runs and before the answer."""
    _execution_listeners.append(listener)


def remove_execution_listener(listener: Callable[[], None]) -> None:
    with contextlib.suppress(ValueError):
        _execution_listeners.remove(listener)


def waits_changes() -> int:
    """Counts entries, exits and heartbeats, so the saver knows when to write the waits again."""
    return _waits_changes


def _changed() -> None:
    global _waits_changes
    _waits_changes += 1


def _context(env: Any) -> dict[str, Any]:
    return env.states.context_object.context_object_data  # type: ignore[no-any-return]


def _current_wait(env: Any) -> dict[str, Any] | None:
    context = _context(env)
    with _waits_lock:
        wait = _waits.get(context["Execution"]["Id"])
    return wait if wait and wait["state"] == context["State"]["Name"] else None


def _resumable_waits() -> None:
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import Timeout
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint, HeartbeatEndpoint

    def entered(evaluate_with_timeout: Any) -> Any:
        def attempt_entered(self: Any, env: Any) -> None:
            context = _context(env)
            execution, state = context["Execution"]["Id"], context["State"]["Name"]
            now = time.time()
            resumed = (context["StateMachine"]["Id"], context["Execution"]["Name"])
            with _waits_lock:
                saved = _resumed.get(resumed)
                if saved and saved["state"] == state:
                    wait = _resumed.pop(resumed)
                else:
                    wait = {"state": state, "entered_at": now, "last_beat": now}
                _waits[execution] = wait
                _changed()
            try:
                evaluate_with_timeout(self, env)
            finally:
                with _waits_lock:
                    if _waits.get(execution) is wait:
                        del _waits[execution]
                    _changed()

        return attempt_entered

    def from_entry(eval_body: Any) -> Any:
        def timeout_from_entry(self: Any, env: Any) -> None:
            eval_body(self, env)
            wait = _current_wait(env)
            if wait is not None:
                seconds = env.stack.pop()
                env.stack.append(max(0, math.ceil(seconds - (time.time() - wait["entered_at"]))))

        return timeout_from_entry

    def with_wait(eval_integration_pattern: Any) -> Any:
        def integration_with_wait(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
            token = _context(env).get("Task", {}).get("Token")
            endpoint = env.callback_pool_manager.get(token) if token else None
            if endpoint is not None:
                endpoint.devstack_wait = _current_wait(env)
            eval_integration_pattern(self, env, *args, **kwargs)

        return integration_with_wait

    def handing_on(setup_heartbeat_endpoint: Any) -> Any:
        def setup_with_wait(self: Any, heartbeat_seconds: int) -> Any:
            heartbeat = setup_heartbeat_endpoint(self, heartbeat_seconds)
            heartbeat.devstack_wait = getattr(self, "devstack_wait", None)
            return heartbeat

        return setup_with_wait

    def beat_recorded(notify_heartbeat: Any) -> Any:
        def notify_heartbeat_recorded(self: Any) -> bool:
            wait = getattr(self, "devstack_wait", None)
            if wait is not None and self._heartbeat_endpoint is not None:
                wait["last_beat"] = time.time()
                _changed()
            return bool(notify_heartbeat(self))

        return notify_heartbeat_recorded

    def until_beat_due(clear_and_wait: Any) -> Any:
        def clear_and_wait_from_last_beat(self: Any) -> bool:
            wait = getattr(self, "devstack_wait", None)
            if wait is None:
                return bool(clear_and_wait(self))
            with self._mutex:
                if self._next_heartbeat_event.is_set():
                    self._next_heartbeat_event.clear()
                    return True
            left = self._heartbeat_seconds - (time.time() - wait["last_beat"])
            return bool(self._next_heartbeat_event.wait(timeout=max(0.0, left)))

        return clear_and_wait_from_last_beat

    patch(ExecutionState, "_evaluate_with_timeout", entered)  # once per attempt, as the timers are
    patch(Timeout, "_eval_body", from_entry)
    patch(StateTaskServiceCallback, "_eval_integration_pattern", with_wait)
    patch(CallbackEndpoint, "setup_heartbeat_endpoint", handing_on)
    patch(CallbackEndpoint, "notify_heartbeat", beat_recorded)
    patch(HeartbeatEndpoint, "clear_and_wait", until_beat_due)


def _started_executions_noted() -> None:
    """Each StartExecution tells the listeners (the saver) before it answers."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def noted(start_execution: Any) -> Any:
        def start_execution_noted(self: Any, *args: Any, **kwargs: Any) -> Any:
            execution = start_execution(self, *args, **kwargs)
            for listener in list(_execution_listeners):
                try:
                    listener()
                except Exception:  # the execution runs either way; the saver tries again
                    logging.getLogger(__name__).exception("noting a started execution failed")
            return execution

        return start_execution_noted

    patch(StepFunctionsParserBackend, "start_execution", noted)


# ---------------------------------------------------------------- KMS


class _KeyPairOnFirstUse:
    """Stands in for a KMS key's private key until something signs or reads the public key."""

    def __init__(self, make: Callable[[str], Any], key_spec: str) -> None:
        self._make = make
        self._key_spec = key_spec
        self._made: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not made yet (a copy, say): nothing private to hand on
            raise AttributeError(name)
        if self._made is None:
            self._made = self._make(self._key_spec)
        return getattr(self._made, name)


def _key_pairs_on_first_use() -> None:
    """moto's `Key` makes an RSA-2048 key pair for every key, symmetric ones too (20-100 ms each,
    most of what provisioning the stack costs); only Sign, Verify and GetPublicKey ever use it."""
    from moto.kms import models

    if getattr(models.generate_private_key, "on_first_use", False):
        return
    make = models.generate_private_key

    def generate_on_first_use(key_spec: str) -> Any:
        return _KeyPairOnFirstUse(make, key_spec)

    generate_on_first_use.on_first_use = True  # type: ignore[attr-defined]
    models.generate_private_key = generate_on_first_use
