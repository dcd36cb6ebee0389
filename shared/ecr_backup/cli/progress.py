"""Progress bars on a terminal (stderr), drawn by rich: bytes, rate and time left.

Only the CLI imports this module (and rich): the Lambda's import path never does.
"""

from __future__ import annotations

import atexit

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ecr_backup.progress import ProgressFactory

REFRESHES_PER_SECOND = 5
BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"]


class BinarySpeedColumn(ProgressColumn):
    """The rate in the units sizes are shown in (MiB/s beside MiB): rich's own
    TransferSpeedColumn writes decimal MB/s."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("?", style="progress.data.speed")
        unit, suffix = filesize.pick_unit_and_suffix(int(speed), BINARY_UNITS, 1024)
        return Text(f"{speed / unit:.1f} {suffix}/s", style="progress.data.speed")


class RichProgress:
    """One bar for one long operation; thread-safe (rich locks its task table)."""

    def __init__(self, total: int, label: str, console: Console | None = None) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            BinarySpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            refresh_per_second=REFRESHES_PER_SECOND,
        )
        self._task: TaskID = self._bar.add_task(label, total=total or None)
        self._total = total
        self._bar.start()
        # An interrupted command never finishes its bar: stop it on the way out, so the
        # terminal gets its cursor back.
        atexit.register(self._bar.stop)

    @classmethod
    def factory(cls, console: Console | None = None) -> ProgressFactory:
        return lambda total, label: cls(total, label, console)

    def advance(self, amount: int) -> None:
        self._bar.advance(self._task, amount)

    def grow(self, amount: int) -> None:
        if amount:
            self._total += amount
            self._bar.update(self._task, total=self._total)

    def finish(self) -> None:
        self._bar.stop()
        atexit.unregister(self._bar.stop)
