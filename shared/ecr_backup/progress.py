"""How long operations report progress: a port the CLI implements for terminals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    def advance(self, amount: int) -> None: ...

    def finish(self) -> None: ...


# Long operations learn their total only after planning: they are handed a factory and
# call it with the total bytes and a label ("restore", "verify", ...).
ProgressFactory = Callable[[int, str], Progress]


class NoProgress:
    """Reports nothing: the default everywhere but on a terminal."""

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


def no_progress(total: int, label: str) -> Progress:
    return NoProgress()
