"""The immutable push records under `<prefix>refs/<repository>/_events/`, read back.

Both the bucket-only catalog (`restore.eventlog.RecordLog`) and `rebuild-index` read them
the same way: one GET per record, in parallel; a record that does not parse, or whose
content names another record, is reported and skipped; the rest come back in name order,
which is the order the events happened (names begin with the event time).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from ecr_backup.errors import InvalidInputError
from ecr_backup.model import ImageEvent

EVENTS_DIR = "/_events/"


class RecordSource(Protocol):
    def record_key(self, name: str) -> str: ...

    def read_record(self, name: str) -> bytes: ...


@dataclass
class PushRecords:
    events: list[tuple[str, ImageEvent]] = field(default_factory=list)  # (name, event)
    invalid: list[str] = field(default_factory=list)  # "<key>: why"


def read_push_records(store: RecordSource, names: list[str], workers: int) -> PushRecords:
    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="records") as pool:
        bodies = list(pool.map(store.read_record, names))
    found = PushRecords()
    for name, body in zip(names, bodies, strict=True):
        key = store.record_key(name)
        try:
            event = ImageEvent.from_json(body)
        except InvalidInputError as e:
            found.invalid.append(f"{key}: {e}")
            continue
        if name != event.record_name:
            # A record is named after its content; one that is not was not written by us.
            found.invalid.append(f"{key}: content is the record {event.record_name}")
            continue
        found.events.append((name, event))
    found.events.sort(key=lambda item: item[0])
    return found


def parse_record_name(name: str) -> tuple[str, str] | None:
    """(repository, action) from `<repository>/_events/<time>_<action>_<tag>_<hex>.json`."""
    repository, sep, rest = name.rpartition(EVENTS_DIR)
    if not sep:
        return None
    parts = rest.split("_", 2)
    return (repository, parts[1]) if len(parts) == 3 else None
