"""The terminal progress bar: bytes done and total, rate and time left, on one line."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from ecr_backup.cli.progress import BinarySpeedColumn, RichProgress
from ecr_backup.settings import MiB


def test_a_bar_shows_bytes_rate_and_time_left() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    bar = RichProgress.factory(console)(0, "replicate")
    bar.grow(10 * MiB)  # a backup learns its total manifest by manifest
    bar.advance(4 * MiB)
    bar.grow(0)
    bar.advance(6 * MiB)
    bar.finish()
    last = screen.getvalue().replace("\r", "\n").splitlines()[-2].removeprefix("\x1b[2K")
    assert last.startswith("replicate ") and "10.0/10.0 MiB" in last
    assert "/s" in last and "0:00:00" in last and len(last) <= 100


def test_the_rate_is_in_the_units_of_the_sizes() -> None:
    """MiB beside MiB/s: one unit family (rich's own rate column writes decimal MB/s)."""
    now = [0.0]
    bar = Progress(BinarySpeedColumn(), get_time=lambda: now[0], auto_refresh=False)
    task = bar.add_task("replicate", total=100 * MiB)
    bar.advance(task, MiB)
    now[0] = 2.0
    bar.advance(task, 6 * MiB)
    (column,) = bar.columns
    assert isinstance(column, BinarySpeedColumn)
    assert str(column.render(bar.tasks[0])) == "3.0 MiB/s"  # 6 MiB in the 2 s since the first
