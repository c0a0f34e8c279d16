"""The local stack's write-ahead journal: a DynamoDB write that was answered survives a crash.

Every DynamoDB request that changes items appends one line before its answer leaves, holding the
state after the request of each item it touched (or that it is gone), and the line is on disk
(fsync) before the request returns. On start the snapshot in `.local/` is loaded, then the journal
replayed over it; a line cut short by a crash is dropped, as its request was never answered.

The journal is a run of numbered segments. A snapshot starts a new segment first, then reads the
tables; once the snapshot is on disk the segments before it are deleted. A snapshot read while
writes go on may hold some items newer than the cut, which replaying the newer segment repairs:
each line holds whole items, so replaying it again, or over a newer copy, ends in the same state.

Line format: `<crc32 of the JSON, 8 hex digits> <JSON>\\n`, the JSON `{"w": [[table, key, item]]}`
with `item` null for a deleted item. Files are readable by their owner only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from devstack import aws, files, patches

log = logging.getLogger("devstack.journal")


def _line(payload: dict[str, Any]) -> bytes:
    text = json.dumps(files.encode_value(payload), separators=(",", ":"))
    return f"{zlib.crc32(text.encode()):08x} {text}\n".encode()


def _parse(line: bytes) -> dict[str, Any] | None:
    """The payload of one whole, intact line; None for a torn or damaged one."""
    if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
        return None
    text = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(text):
            return None
        return files.decode_value(json.loads(text))  # type: ignore[no-any-return]
    except ValueError:
        return None


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = files.private_dir(directory / "journal")
        self._file: BinaryIO | None = None
        self._segment = 0
        self._lock = threading.Lock()

    def segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.log") if p.stem.isdigit())

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:08d}.log"

    # --- on start

    def replay(self) -> int:
        """Apply every intact line, oldest first; the number of item states applied."""
        applied = 0
        for segment in self.segments():
            path = self._path(segment)
            good = 0
            with path.open("rb") as file:
                for line in file:
                    payload = _parse(line)
                    if payload is None:
                        break
                    applied += self._apply(payload)
                    good += len(line)
            if good < path.stat().st_size:
                log.warning("journal %s: dropping a torn last write (%d bytes)", path.name, path.stat().st_size - good)
                with path.open("r+b") as file:
                    file.truncate(good)
                    os.fsync(file.fileno())
        return applied

    @staticmethod
    def _apply(payload: dict[str, Any]) -> int:
        from moto.dynamodb.models.dynamo_type import DynamoType

        applied = 0
        with aws._dynamodb_lock:
            for table_name, key, item in payload["w"]:
                table = aws.table(table_name)
                if table is None:
                    continue
                if item is not None:
                    table.put_item(item)
                else:
                    hash_key = DynamoType(key[table.hash_key_attr])
                    range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                    table.delete_item(hash_key, range_key)
                applied += 1
        return applied

    def open(self) -> Journal:
        """Start appending (a new segment), and journal every DynamoDB write from now on."""
        with self._lock:
            self._open_next()
        patches.on_request_written(self.append)
        return self

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
        self._segment = max([self._segment, *self.segments()]) + 1
        descriptor = os.open(self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(descriptor, "ab")
        files.fsync_dir(self.directory)

    # --- while running

    def append(self, touched: patches.Touched) -> None:
        """One line for one request: each touched item as it is now. Called under the DynamoDB lock."""
        writes = []
        for (table_name, hash_key, range_key), table in touched.items():
            item = patches.current_item(table, hash_key, range_key)
            state = item.to_json()["Attributes"] if item is not None else None
            writes.append([table_name, aws.item_key(table, hash_key, range_key), state])
        with self._lock:
            if self._file is None:
                return
            self._file.write(_line({"w": writes}))
            self._file.flush()
            os.fsync(self._file.fileno())

    def cut(self) -> int:
        """Start a new segment; the last one a snapshot taken from now on makes redundant."""
        with aws._dynamodb_lock, self._lock:
            closed = self._segment
            self._open_next()
            return closed

    def size(self) -> int:
        """Bytes in the journal, all segments."""
        return sum(self._path(segment).stat().st_size for segment in self.segments())

    def discard_through(self, segment: int) -> None:
        for old in self.segments():
            if old <= segment:
                self._path(old).unlink(missing_ok=True)

    def close(self) -> None:
        patches.remove_request_listener(self.append)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
