"""The terminal progress bar: bytes done and total, rate and time left, on one line."""

from __future__ import annotations

import io

from rich.console import Console

from ecr_backup.cli.progress import RichProgress
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
