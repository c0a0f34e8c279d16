"""Every change the local stack makes to the internals of its dependencies, in one registry.

moto emulates one request at a time for tests; the local stack serves a working day from many
threads, and runs many Lambda instances of the functions in one process. `REGISTRY`, at the end
of this module, lists each patch: the package and the exact version it was checked against, what
it replaces, what it fixes and why, and the function applying it. `apply()` refuses to patch any
other version: a moved pin fails loudly, naming the patches to re-check, instead of patching code
that changed underneath them.

A patch the stack switches on and off (the Lambda bridge, the live WebSocket connections, the
journal, shortened waits) is applied once; while off, it hands every call to the code it replaced.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import functools
import importlib.metadata
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
from types import ModuleType
from typing import Any

# The versions these patches were read against: the pins of requirements-dev.txt and of the
# layer's requirements.txt. Moving a pin means re-reading each patch of that package first.
MOTO = "5.2.5"
POWERTOOLS = "3.37.0"

STREAM_RETENTION = timedelta(hours=24)
ITERATOR_LIFETIME = 15 * 60.0
ITERATORS_KEPT = 1_000

dynamodb_lock = threading.RLock()
"""Held for every DynamoDB request and stream read; re-entrant, so a patch may take it again."""

_partition = threading.local()  # the candidates one Table.query on this thread reads
_plain = threading.local()  # set by plain_moto(), for differential tests


# ---------------------------------------------------------------- the registry's machinery


@dataclass(frozen=True)
class Patch:
    name: str
    package: str  # the distribution, as pip and importlib.metadata name it
    checked_against: str  # the exact version whose code this patch was read against
    targets: tuple[str, ...]  # what it replaces: module.Class.attribute
    fixes: str  # what the package does, and why the local stack cannot live with it
    apply: Callable[[], None]


class PinMoved(RuntimeError):
    """An installed package is not the version its patches were checked against."""

    def __init__(self, package: str, checked_against: str, installed: str, patches: list[str]) -> None:
        self.package, self.checked_against, self.installed, self.patches = package, checked_against, installed, patches
        super().__init__(
            f"{package} {installed} is installed, but devstack/patches.py was checked against {package} "
            f"{checked_against}. Re-check these patches against {installed}, then move the version they name: "
            f"{', '.join(patches)}"
        )


@functools.cache
def installed_version(package: str) -> str:
    return importlib.metadata.version(package)


_applied: set[str] = set()  # names of the patches in force in this process
_replaced: dict[str, set[str]] = {}  # patch name -> the targets its application replaced
_applying: list[str] = []  # the patch being applied, for patch() to note its targets
_apply_lock = threading.Lock()


def apply(*packages: str) -> None:
    """Apply every patch of the packages named (all, when none is), once per process. Raises
    PinMoved, before patching anything of it, when a package is not the version checked."""
    chosen = [entry for entry in REGISTRY if not packages or entry.package in packages]
    for package in dict.fromkeys(entry.package for entry in chosen):
        installed = installed_version(package)
        stale = [entry for entry in chosen if entry.package == package and entry.checked_against != installed]
        if stale:
            raise PinMoved(package, stale[0].checked_against, installed, [entry.name for entry in stale])
    with _apply_lock:
        for entry in chosen:
            if entry.name in _applied:
                continue
            _applying[:] = [entry.name]
            try:
                entry.apply()
            finally:
                _applying.clear()
            _applied.add(entry.name)


def replaced(name: str) -> set[str]:
    """The targets a patch replaced when it was applied (empty before)."""
    return set(_replaced.get(name, ()))


_patched: set[tuple[Any, str, str]] = set()


def patch(owner: type | ModuleType, name: str, make: Callable[[Any], Any], wrap_static: bool = False) -> None:
    """Replace owner.name with make(current), once per `make`: patches of one method stack."""
    if _applying:
        where = owner.__name__ if isinstance(owner, ModuleType) else f"{owner.__module__}.{owner.__qualname__}"
        _replaced.setdefault(_applying[0], set()).add(f"{where}.{name}")
    applied = (owner, name, make.__qualname__)
    if applied in _patched:
        return
    _patched.add(applied)
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


# ---------------------------------------------------------------- writes: counters, indexes, requests

Touched = dict[tuple[str, Any, Any], Any]  # (table name, hash key, range key) -> the table
RequestListener = Callable[[Touched], None]
_request_listeners: list[RequestListener] = []
_touched = threading.local()  # the items this thread's current DynamoDB request changed


def on_request_written(listener: RequestListener) -> None:
    """Call listener(touched) after each DynamoDB request that changed items, under the lock,
    before its answer leaves (the journal writes the request's line there)."""
    if listener not in _request_listeners:
        _request_listeners.append(listener)


def remove_request_listener(listener: RequestListener) -> None:
    if listener in _request_listeners:
        _request_listeners.remove(listener)


def write_count(table: Any) -> int:
    """How many item changes the table has seen since it was made (a cheap sign of change)."""
    return int(table.__dict__.get("_writes", 0))


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
    touched = getattr(_touched, "keys", None)
    if touched is not None:
        touched[(table.name, hash_key, range_key)] = table


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


def _requests_reported() -> None:
    from moto.dynamodb.responses import DynamoHandler

    def reported(call_action: Any) -> Any:
        def call_action_reported(handler: Any) -> Any:
            if not _request_listeners:
                return call_action(handler)
            with dynamodb_lock:
                _touched.keys = {}
                try:
                    return call_action(handler)
                finally:
                    touched, _touched.keys = _touched.keys, None
                    for listener in list(_request_listeners) if touched else []:
                        listener(touched)

        return call_action_reported

    patch(DynamoHandler, "call_action", reported)


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


def _partition_items(
    table: Any, hash_key: Any, index_name: str | None, hash_conditions: Any
) -> tuple[Any, list[Any] | None]:
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


def _early_answers_end_waits() -> None:
    """moto registers a waitForTaskToken callback before invoking the task's Lambda, so an answer
    (SendTaskSuccess/Failure) may arrive while the Lambda runs: moto stores it, but creates the
    heartbeat waiter only after the Lambda returns, and that new waiter then sleeps for the whole
    heartbeat timeout and reports a timeout over the stored answer. Real Step Functions uses the
    stored answer. So a waiter created once an answer (or an interruption) is in is woken at once."""
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    def woken(setup_heartbeat_endpoint: Any) -> Any:
        def setup_woken_by_a_stored_answer(self: Any, heartbeat_seconds: int) -> Any:
            endpoint = setup_heartbeat_endpoint(self, heartbeat_seconds)
            # notify() stores the outcome, sets the event, then pokes a waiter if one exists;
            # checking after the waiter is in place means one of the two always sees the other.
            if self._notify_event.is_set():
                endpoint.notify()
            return endpoint

        return setup_woken_by_a_stored_answer

    patch(CallbackEndpoint, "setup_heartbeat_endpoint", woken)


_wait_rules: list[Callable[[int], float]] = []


@contextlib.contextmanager
def waits_lasting(rule: Callable[[int], float]) -> Iterator[None]:
    """Within the block, a Wait state of N seconds lasts rule(N) seconds."""
    apply("moto")
    _wait_rules.append(rule)
    try:
        yield
    finally:
        _wait_rules.pop()


def _shortened_waits() -> None:
    """Wait states sleep in real time; tests shorten them (`waits_lasting`) without editing ASL."""
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    def shortened(wait_interval: Any) -> Any:
        def wait_interval_shortened(self: Any, env: Any, wait_seconds: int) -> None:
            if not _wait_rules:
                return wait_interval(self, env, wait_seconds)  # type: ignore[no-any-return]
            deadline = time.monotonic() + max(0.0, _wait_rules[-1](wait_seconds))
            while env.is_running():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                env.program_state_event.wait(min(left, 0.05))
            return None

        return wait_interval_shortened

    patch(WaitFunction, "_wait_interval", shortened)


# (function name, payload, request headers, response headers) -> the answer, or None for moto's
LambdaInvoke = Callable[[str, Any, Any, Any], bytes | None]
_lambda_invokes: list[LambdaInvoke] = []


def run_lambda_invokes(invoke: LambdaInvoke | None) -> None:
    """While set, moto's Lambda Invoke asks `invoke` first (devstack.stepfunctions' bridge to the
    template's functions); None from it, or no `invoke`, and moto answers as it would."""
    apply("moto")
    _lambda_invokes[:] = [invoke] if invoke else []


def _lambda_invokes_run_functions() -> None:
    """moto's Lambda without Docker only echoes payloads; a state machine's Lambda task, or a
    function calling lambda.invoke, must run the template's function."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def bridged(invoke: Any) -> Any:
        def invoke_bridged(
            self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
        ) -> Any:
            bridge = _lambda_invokes[0] if _lambda_invokes else None
            answer = bridge(function_name, body, headers, response_headers) if bridge else None
            if answer is None:
                return invoke(self, function_name, qualifier, body, headers, response_headers)
            return answer

        return invoke_bridged

    patch(LambdaSimpleBackend, "invoke", bridged)


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

    def on_first_use(generate_private_key: Any) -> Any:
        def generate_on_first_use(key_spec: str) -> Any:
            return _KeyPairOnFirstUse(generate_private_key, key_spec)

        return generate_on_first_use

    patch(models, "generate_private_key", on_first_use)


# ---------------------------------------------------------------- API Gateway Management API

_connections: list[Any] = []


def serve_connections(server: Any | None) -> None:
    """While set, moto's API Gateway Management API is answered by `server` (the live sockets of
    devstack.websocket): its post_to_connection(data, connection_id), get_connection(connection_id)
    and delete_connection(connection_id), with moto's arguments. None: moto answers again."""
    apply("moto")
    _connections[:] = [server] if server is not None else []


_MANAGEMENT_API = ("post_to_connection", "get_connection", "delete_connection")


def _live_connections() -> None:
    """moto's Management API keeps posted data in a list and knows no connection; a function's
    push must reach the live socket, or fail with GoneException (410) as on AWS."""
    from moto.apigatewaymanagementapi.models import ApiGatewayManagementApiBackend

    def served(plain: Any) -> Any:
        name = plain.__name__

        def served_by_live_sockets(self: Any, *args: Any, **kwargs: Any) -> Any:
            server = _connections[0] if _connections else None
            if server is None:
                return plain(self, *args, **kwargs)
            return getattr(server, name)(*args, **kwargs)

        return served_by_live_sockets

    for name in _MANAGEMENT_API:
        patch(ApiGatewayManagementApiBackend, name, served)


# ---------------------------------------------------------------- Powertools


def _one_event_per_resolver() -> None:
    """Powertools keeps the event being resolved on its router class, shared by every resolver in
    the process: harmless in Lambda, where a process serves one request at a time, but here
    concurrent invocations run in one process, and a request could be answered with another's
    body. Each resolver (one per function instance, see devstack.lambdas) keeps its own event
    and context."""
    from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

    def own_event(to_proxy_event: Any) -> Any:
        def to_own_proxy_event(self: Any, event: dict[str, Any]) -> Any:
            proxy = to_proxy_event(self, event)
            self.current_event = proxy  # an instance attribute shadows the class-wide one
            return proxy

        return to_own_proxy_event

    def own_context(resolve: Any) -> Any:
        def resolve_with_own_context(self: Any, event: dict[str, Any], context: Any) -> Any:
            self.lambda_context = context
            return resolve(self, event, context)

        return resolve_with_own_context

    patch(ApiGatewayResolver, "_to_proxy_event", own_event)
    patch(ApiGatewayResolver, "resolve", own_context)


# ---------------------------------------------------------------- the registry, in the order applied

_DYNAMODB = "moto.dynamodb.models.DynamoDBBackend"
_TABLE = "moto.dynamodb.models.table.Table"
_STATES = "moto.stepfunctions.parser"
_CALLBACK = f"{_STATES}.asl.eval.callback.callback"

REGISTRY: tuple[Patch, ...] = (
    Patch(
        "untracked models", "moto", MOTO, ("moto.core.common_models.BaseModel.__new__",),
        "BaseModel.__new__ appends every model instance ever made (every item, query result and "
        "stream record) to a class-level list cleared only when a mock stops, and never read: "
        "memory grew with every request of a day's work.",
        _untracked_models,
    ),
    Patch(
        "write hooks", "moto", MOTO,
        (f"{_TABLE}.put_item", f"{_TABLE}.delete_item", f"{_TABLE}.get_item", f"{_DYNAMODB}.update_item"),
        "Every change to an item is counted (persistence's cheap sign of change), keeps the query "
        "indexes below current and is noted for the request's journal line; a lookup of a missing "
        "item no longer leaves an empty partition behind (Table.items is a defaultdict).",
        _write_hooks,
    ),
    Patch(
        "item-sized transactions", "moto", MOTO, (f"{_DYNAMODB}.transact_write_items",),
        "transact_write_items deep-copies each named table (its stream included) to roll back: a "
        "transaction cost grew with the table. This one keeps a copy of only the items it names and "
        "the stream's length, and answers as moto 5.2.5's does.",
        _item_sized_transactions,
    ),
    Patch(
        "page-sized queries", "moto", MOTO, (f"{_TABLE}.query", f"{_TABLE}.all_items"),
        "Table.query sorts the whole table, then filters it. Here a Query reads the partition it "
        "names (the table's items by hash key, or a per-index map kept on every write), kept sorted "
        "between writes, and of that only the run its key condition, start key and limit select, as "
        "DynamoDB reads a page: latency stays flat as data grows.",
        _page_sized_queries,
    ),
    Patch(
        "bounded streams", "moto", MOTO,
        (
            "moto.dynamodbstreams.models.DynamoDBStreamsBackend.__init__",
            "moto.dynamodb.models.table.StreamShard.add",
            "moto.dynamodb.models.table.StreamShard.get",
        ),
        "moto keeps every stream record and every shard iterator it hands out. Records older than "
        "DynamoDB's 24 hours, or read by every local consumer, are trimmed (an older iterator reads "
        "from the oldest kept, as AWS's TrimmedDataAccess); iterators expire after 15 minutes.",
        _bounded_streams,
    ),
    Patch(
        "requests reported", "moto", MOTO, ("moto.dynamodb.responses.DynamoHandler.call_action",),
        "A DynamoDB request that changed items reports them, with their state, to the journal "
        "before its answer leaves: a write that was answered survives a crash.",
        _requests_reported,
    ),
    Patch(
        "serialized DynamoDB", "moto", MOTO,
        (
            "moto.dynamodb.responses.DynamoHandler.call_action",
            "moto.dynamodbstreams.responses.DynamoDBStreamsHandler.call_action",
            *(f"{_DYNAMODB}.{name}" for name in _DYNAMODB_DATA_PLANE),
        ),
        "moto's DynamoDB is not thread-safe and the stack serves from many threads: every request "
        "(and every stream read) runs under one lock, as DynamoDB applies each write atomically. "
        "Applied after the other DynamoDB patches, so the lock is taken outside all of them.",
        _serialized_dynamodb,
    ),
    Patch(
        "cached ASL validation", "moto", MOTO, (f"{_STATES}.models.StepFunctionsParserBackend._validate_definition",),
        "Parsing an ASL definition costs moto ~0.6 s, paid for every state machine of every stack a "
        "test makes; the same definition validates the same way.",
        _cached_asl_validation,
    ),
    Patch(
        "executions not yet running", "moto", MOTO, (f"{_STATES}.models.StepFunctionsParserBackend._get_executions",),
        "A SendTaskSuccess/Failure/Heartbeat while an execution's worker thread had not built its "
        "environment failed with an AttributeError (a 500 locally); the token lookups skip such an "
        "execution, which no token can belong to yet.",
        _skip_executions_not_yet_running,
    ),
    Patch(
        "resumable waits", "moto", MOTO,
        (
            f"{_STATES}.asl.component.state.exec.execute_state.ExecutionState._evaluate_with_timeout",
            f"{_STATES}.asl.component.common.timeouts.timeout.Timeout._eval_body",
            f"{_STATES}.asl.component.state.exec.state_task.service.state_task_service_callback."
            "StateTaskServiceCallback._eval_integration_pattern",
            f"{_CALLBACK}.CallbackEndpoint.setup_heartbeat_endpoint",
            f"{_CALLBACK}.CallbackEndpoint.notify_heartbeat",
            f"{_CALLBACK}.HeartbeatEndpoint.clear_and_wait",
        ),
        "A state's timeout counts from its entry and a heartbeat's from the last beat, and both "
        "survive a restart (persist.restart_executions): an agent silent since before a stop is "
        "reported stalled one timeout after its last beat, not a whole timeout after the restart.",
        _resumable_waits,
    ),
    Patch(
        "early answers end waits", "moto", MOTO, (f"{_CALLBACK}.CallbackEndpoint.setup_heartbeat_endpoint",),
        "An answer to a task token that arrives while the task's Lambda still runs is stored, but "
        "the heartbeat waiter moto makes afterwards slept through its timeout and reported one "
        "over the answer. Step Functions uses the stored answer; so does this.",
        _early_answers_end_waits,
    ),
    Patch(
        "started executions noted", "moto", MOTO, (f"{_STATES}.models.StepFunctionsParserBackend.start_execution",),
        "Each StartExecution tells the saver before it answers, so a run's execution is on disk "
        "before its start is answered.",
        _started_executions_noted,
    ),
    Patch(
        "shortened waits", "moto", MOTO,
        (f"{_STATES}.asl.component.state.wait.wait_function.wait_function.WaitFunction._wait_interval",),
        "Wait states sleep in real time; tests shorten them (waits_lasting) without editing the ASL.",
        _shortened_waits,
    ),
    Patch(
        "Lambda invokes run the functions", "moto", MOTO, ("moto.awslambda_simple.models.LambdaSimpleBackend.invoke",),
        "moto's Lambda without Docker only echoes payloads; while the bridge is on (run_lambda_invokes), "
        "a Lambda Invoke, a state machine's task included, runs the template's function in-process.",
        _lambda_invokes_run_functions,
    ),
    Patch(
        "key pairs on first use", "moto", MOTO, ("moto.kms.models.generate_private_key",),
        "moto's Key makes an RSA-2048 key pair for every KMS key, symmetric ones too (20-100 ms "
        "each, most of what provisioning a stack cost); only Sign, Verify and GetPublicKey use it.",
        _key_pairs_on_first_use,
    ),
    Patch(
        "live WebSocket connections", "moto", MOTO,
        tuple(f"moto.apigatewaymanagementapi.models.ApiGatewayManagementApiBackend.{n}" for n in _MANAGEMENT_API),
        "moto's API Gateway Management API knows no connection; while a local WebSocket API serves "
        "(serve_connections), a function's post reaches the live socket or fails with GoneException.",
        _live_connections,
    ),
    Patch(
        "one event per resolver", "aws-lambda-powertools", POWERTOOLS,
        (
            "aws_lambda_powertools.event_handler.api_gateway.ApiGatewayResolver._to_proxy_event",
            "aws_lambda_powertools.event_handler.api_gateway.ApiGatewayResolver.resolve",
        ),
        "Powertools keeps the event being resolved on the router class, shared by every resolver in "
        "the process; concurrent invocations in one process could answer a request with another's body.",
        _one_event_per_resolver,
    ),
)  # fmt: skip
