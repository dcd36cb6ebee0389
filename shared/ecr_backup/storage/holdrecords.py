"""The immutable hold and release records under `<prefix>refs/<repository>/_holds/`.

The index keeps the holds in force; the bucket keeps every hold placed and every release,
so `rebuild-index` can tell which holds are still in force. A record is never overwritten
(its name carries the time and the action), so a release is a record of its own and a
rebuild replays them in name (= time) order.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from ecr_backup.errors import InvalidInputError
from ecr_backup.model import format_time, parse_time
from ecr_backup.oci.digest import Digest

HOLDS_DIR = "/_holds/"

HoldAction = Literal["hold", "release"]


class RecordWriter(Protocol):
    def put_record(self, name: str, body: bytes) -> bool: ...


class RecordReader(Protocol):
    def read_record(self, name: str) -> bytes: ...

    def record_key(self, name: str) -> str: ...


@dataclass(frozen=True)
class HoldRecord:
    repository: str
    digest: Digest
    action: HoldAction
    time: datetime
    reason: str | None = None
    objects: tuple[Digest, ...] = ()  # put on legal hold, or (release) to be lifted

    @property
    def record_name(self) -> str:
        when = format_time(self.time)
        return f"{self.repository}{HOLDS_DIR}{when}_{self.action}_{self.digest.hex}.json"

    def to_json(self) -> bytes:
        document = {
            "repository": self.repository,
            "digest": str(self.digest),
            "action": self.action,
            "time": format_time(self.time),
            "reason": self.reason,
            "objects": [str(d) for d in self.objects],
        }
        return json.dumps(document, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> HoldRecord:
        try:
            doc = json.loads(data)
            action = doc["action"]
            if action not in ("hold", "release"):
                raise ValueError(f"unknown action {action!r}")
            return cls(
                repository=doc["repository"],
                digest=Digest.parse(doc["digest"]),
                action=action,
                time=parse_time(doc["time"]),
                reason=doc.get("reason"),
                objects=tuple(Digest.parse(d) for d in doc.get("objects", [])),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidInputError(f"not a hold record: {e}") from e


@dataclass
class HoldRecords:
    in_force: dict[tuple[str, Digest], HoldRecord] = field(default_factory=dict)
    released: set[tuple[str, Digest]] = field(default_factory=set)  # last record: a release
    invalid: list[str] = field(default_factory=list)  # "<key>: why"


def write_hold_record(store: RecordWriter, record: HoldRecord) -> None:
    store.put_record(record.record_name, record.to_json())


def read_hold_records(store: RecordReader, record_names: list[str], workers: int) -> HoldRecords:
    """The hold records among `record_names` (names under refs/), replayed in time order:
    the holds placed and not released since."""
    names = sorted(n for n in record_names if HOLDS_DIR in n)
    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="holds") as pool:
        bodies = list(pool.map(store.read_record, names))
    found = HoldRecords()
    for name, body in zip(names, bodies, strict=True):
        try:
            record = HoldRecord.from_json(body)
        except InvalidInputError as e:
            found.invalid.append(f"{store.record_key(name)}: {e}")
            continue
        if record.record_name != name:
            found.invalid.append(f"{store.record_key(name)}: content is {record.record_name}")
            continue
        key = (record.repository, record.digest)
        if record.action == "hold":
            found.in_force[key] = record
            found.released.discard(key)
        else:
            found.in_force.pop(key, None)
            found.released.add(key)
    return found
