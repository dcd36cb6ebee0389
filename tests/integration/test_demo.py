"""`make demo` is a deliverable: it must run to the end on a fresh machine."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_backs_up_replays_and_restores() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "devkit.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    # The redelivered v2 batch copies nothing; the layout lists one record per event.
    replay = out.split("delivered again")[1].split("s3://")[0]
    outcomes = re.findall(r"^demo/web\S*: (.*)$", replay, re.M)
    assert outcomes == ["already backed up; nothing fetched or copied"] * 3
    assert len(re.findall(r"^  refs/demo/web/_events/", out, re.M)) == 6
    restored = re.search(r"restored/web:v1 -> (sha256:\w+)", out)
    original = re.search(r"original demo/web:v1 +-> (sha256:\w+)", out)
    assert restored and original and restored.group(1) == original.group(1)
    assert "no problems found" in out
    assert "demo: done; servers stopped" in out
