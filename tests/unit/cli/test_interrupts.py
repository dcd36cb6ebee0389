"""The command line's signal handling, in a child process (signals go to a whole process).

The commands themselves are interrupted with a 1 GiB layer in flight in
tests/integration/test_interrupts.py; here, a run whose cleanup hangs shows the two last
resorts: the watchdog, and the second signal.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from ecr_backup.cli.interrupts import CLEANUP_GRACE_S

# Cleanup that never ends: the run is cancelled, and the code on its way out hangs.
HANGING_CLEANUP = """
import sys, time
from ecr_backup.cancellation import Cancelled
from ecr_backup.cli.interrupts import interrupts_cancel
with interrupts_cancel():
    try:  # entered before "ready": a signal right after it lands inside
        print("ready", flush=True)
        time.sleep(60)
    except Cancelled:
        print("cancelled", flush=True)
        time.sleep(60)
sys.exit(0)
"""


def start() -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HANGING_CLEANUP], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def test_a_hanging_cleanup_is_ended_by_the_watchdog_with_exit_130() -> None:
    child = start()
    sent = time.monotonic()
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 130
    assert out == "cancelled\n"
    assert CLEANUP_GRACE_S <= time.monotonic() - sent < 3


def test_a_second_signal_exits_at_once() -> None:
    child = start()
    assert child.stdout is not None
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    assert child.stdout.readline() == "cancelled\n"
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=30)
    assert child.returncode == 130
    assert time.monotonic() - sent < CLEANUP_GRACE_S  # not the watchdog's doing
