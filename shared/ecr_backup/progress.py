"""How long operations report progress: a port the CLI implements for terminals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ecr_backup.oci.streams import Readable


class Progress(Protocol):
    def advance(self, amount: int) -> None: ...

    def grow(self, amount: int) -> None:
        """More work found than the total first given (a backup learns it manifest by manifest)."""
        ...

    def finish(self) -> None: ...


# Long operations learn their total only after planning: they are handed a factory and
# call it with the total bytes (0 when still unknown) and a label ("restore", "verify"...).
ProgressFactory = Callable[[int, str], Progress]


class NoProgress:
    """Reports nothing: the default everywhere but on a terminal."""

    def advance(self, amount: int) -> None:
        pass

    def grow(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


def no_progress(total: int, label: str) -> Progress:
    return NoProgress()


class Counted:
    """A stream that tells a progress bar how much went by."""

    def __init__(self, source: Readable, progress: Progress) -> None:
        self._source = source
        self._progress = progress
        self.count = 0

    def read(self, amt: int = -1, /) -> bytes:
        data = self._source.read(amt)
        self.count += len(data)
        self._progress.advance(len(data))
        return data
