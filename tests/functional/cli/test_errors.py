"""Every command, run as a new user would with AWS set up wrong: one line on stderr, the
documented exit code, never a traceback. Commands are read from the parser, so a new one is
covered as soon as it is registered (give it arguments below if it needs some)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devkit.net import SilentListener, free_port
from ecr_backup.cli import build_parser
from ecr_backup.composition import AwsServices
from ecr_backup.errors import ExitCode
from ecr_backup.settings import AWS_CONNECT_TIMEOUT_SECONDS, AWS_MAX_ATTEMPTS, Settings
from tests.helpers import BUCKET, TABLE

DIGEST = "sha256:" + "a" * 64
PUSH_EVENT = {
    "version": "0",
    "id": "event-1",
    "detail-type": "ECR Image Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2026-05-01T10:00:00Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {
        "result": "SUCCESS",
        "repository-name": "team/app",
        "image-digest": DIGEST,
        "action-type": "PUSH",
        "image-tag": "v1",
    },
}


def commands() -> list[str]:
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    return sorted(subparsers.choices)


def arguments(command: str, workdir: Path) -> list[str]:
    """Valid arguments for the commands that need some; the rest run bare."""
    event = workdir / "event.json"
    event.write_text(json.dumps(PUSH_EVENT))
    needed: dict[str, list[str]] = {
        "replicate": ["team/app:v1"],
        "handle-event": [str(event)],
        "tags": ["team/app"],
        "history": ["team/app:v1"],
        "show": ["team/app:v1"],
        "restore": ["team/app:v1", "--to", f"http://127.0.0.1:{free_port()}/team/app"],
        "export": ["team/app:v1", "--oci-archive", str(workdir / "app.tar")],
        "hold": ["team/app:v1"],
        "release": ["team/app:v1"],
        "undelete": ["team/app", "--since", "2026-01-01T00:00:00Z"],
    }
    return needed.get(command, [])


CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = {"AWS_DEFAULT_REGION": "us-east-1"}


def no_credentials(_: int) -> dict[str, str]:
    # A region, so that what is missing is the credentials alone.
    return REGION


def unreachable_endpoint(port: int) -> dict[str, str]:
    return {**CREDENTIALS, **REGION, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}


def unknown_profile(_: int) -> dict[str, str]:
    return {**REGION, "AWS_PROFILE": "no-such-profile"}


def no_region(_: int) -> dict[str, str]:
    return CREDENTIALS


REFUSED = "cannot reach http://127.0.0.1:{port}: connection refused"
# (environment, exit code, what the line says)
CASES: list[tuple[Callable[[int], dict[str, str]], ExitCode, str]] = [
    (no_credentials, ExitCode.CONFIGURATION, "no AWS credentials (set AWS_PROFILE"),
    (unreachable_endpoint, ExitCode.REMOTE, REFUSED),
    (unknown_profile, ExitCode.CONFIGURATION, "(no-such-profile) could not be found"),
    (no_region, ExitCode.CONFIGURATION, "no AWS region (set AWS_DEFAULT_REGION"),
]


@pytest.mark.parametrize("command", commands())
@pytest.mark.parametrize(
    ("environment", "exit_code", "says"), CASES, ids=[c[0].__name__ for c in CASES]
)
def test_each_command_fails_in_one_line_with_its_exit_code(
    command: str,
    environment: Callable[[int], dict[str, str]],
    exit_code: ExitCode,
    says: str,
    tmp_path: Path,
) -> None:
    port = free_port()  # nobody listens there
    run = run_command(command, environment(port), tmp_path)
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("ecr-backup: error: ") and says.format(port=port) in lines[0]
    assert run.returncode == exit_code, run.stderr
    assert run.stdout == ""
    assert not (tmp_path / "app.tar").exists()


def test_an_aws_endpoint_that_never_answers_fails_in_one_line_within_30_s(
    tmp_path: Path,
) -> None:
    """Silence is an error, quickly: connect and read timeouts and bounded retries end the
    command well within 30 s, retries included (settings.py has the budget)."""
    with SilentListener() as silent:
        started = time.monotonic()
        run = run_command("repos", unreachable_endpoint(silent.port), tmp_path)
        elapsed = time.monotonic() - started
        assert len(silent.accepted) == AWS_MAX_ATTEMPTS  # it was asked, and said nothing
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("ecr-backup: error: ")
    assert f"cannot reach http://127.0.0.1:{silent.port}: timed out" in lines[0]
    assert run.returncode == ExitCode.REMOTE
    assert run.stdout == ""
    assert elapsed < 30


def run_command(
    command: str, environment: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """`ecr-backup COMMAND` with its arguments, in `environment` and no ~/.aws."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HOME": str(home),
        # The credential chain would otherwise ask the EC2 metadata service, off this machine.
        "AWS_EC2_METADATA_DISABLED": "true",
        "ECR_BACKUP_BUCKET": BUCKET,
        "ECR_BACKUP_TABLE": TABLE,
        **environment,
    }
    return subprocess.run(
        [sys.executable, "-m", "ecr_backup", command, *arguments(command, tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def test_aws_clients_try_three_times_with_a_short_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retry budget: a call to an unreachable endpoint is sent AWS_MAX_ATTEMPTS times."""
    for name, value in unreachable_endpoint(free_port()).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client: Any = AwsServices(Settings(bucket=BUCKET, table=TABLE)).client("dynamodb")
    attempts: list[str] = []
    client.meta.events.register("before-send", lambda **_: attempts.append("sent"))
    assert client.meta.config.connect_timeout == AWS_CONNECT_TIMEOUT_SECONDS
    with pytest.raises(Exception, match="Could not connect"):
        client.describe_table(TableName=TABLE)
    assert len(attempts) == AWS_MAX_ATTEMPTS == 3
